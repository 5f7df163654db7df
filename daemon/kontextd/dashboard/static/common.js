// Shared parts of every dashboard page: DOM building (textContent only — the CSP
// forbids innerHTML), the API with its CSRF header, times and countdowns, the live
// stream, the one confirmation dialog and the status notice.

const CSRF = document.querySelector('meta[name="kontext-csrf"]').content;
let clockSkew = 0; // server time minus browser time, in seconds

/** el("td", {class: "x", dataset: {label: "Agent"}}, "text", child, ...) */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export class ApiError extends Error {}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) {
    throw new ApiError("Your dashboard session has ended: run 'kontext dashboard' for a new one.");
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new ApiError(message);
  }
  return body;
}

export async function api(path) {
  const response = await fetch(`/dashboard/api/${path}`, {
    credentials: "same-origin",
    cache: "no-store",
  });
  const body = await answer(response);
  if (body && typeof body.now === "number") clockSkew = body.now - Date.now() / 1000;
  return body;
}

export async function post(path, body) {
  const response = await fetch(`/dashboard/api/${path}`, {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { "Content-Type": "application/json", "X-Kontext-CSRF": CSRF },
    body: JSON.stringify(body || {}),
  });
  return answer(response);
}

// -- time ----------------------------------------------------------------------

export function now() {
  return Date.now() / 1000 + clockSkew;
}

export function clock(ts) {
  const date = new Date(ts * 1000);
  const today = new Date().toDateString() === date.toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return today ? time : `${date.toLocaleDateString()} ${time}`;
}

export function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function ago(ts) {
  const seconds = now() - ts;
  return seconds < 5 ? "just now" : `${span(seconds)} ago`;
}

/** A live countdown to ``until``; every one on the page ticks from one timer. */
export function countdown(until) {
  const node = el("span", { class: "countdown", dataset: { until: String(until) } });
  tick(node);
  return node;
}

function tick(node) {
  const left = Number(node.dataset.until) - now();
  node.textContent = left > 0 ? `in ${span(left)}` : "expired";
  node.classList.toggle("soon", left > 0 && left < 60);
}

setInterval(() => document.querySelectorAll(".countdown").forEach(tick), 1000);

export function when(ts) {
  return el("time", { class: "when", datetime: new Date(ts * 1000).toISOString() }, clock(ts));
}

// -- pieces ------------------------------------------------------------------------

export function badge(text, kind) {
  return el("span", { class: `badge ${kind || ""}` }, text);
}

export function words(scopes) {
  if (!scopes.length) return el("span", { class: "empty" }, "none");
  return el(
    "ul",
    { class: "words" },
    scopes.map((s) => el("li", { title: s.scope }, s.words, " ", el("span", { class: "integration" }, `(${s.integration || s.scope.split(":")[0]})`))),
  );
}

/** A table; ``rows`` are arrays of cells (Node or text); narrow windows stack it.
 * ``widths`` (CSS lengths per column) keep the tables of one page aligned. */
export function table(caption, columns, rows, widths) {
  const cols = (widths || []).map((width) => {
    const col = el("col");
    col.style.width = width; // CSSOM, not a style attribute: allowed by the CSP
    return col;
  });
  return el(
    "table",
    { class: widths ? "stack fixed" : "stack" },
    el("caption", { class: "visually-hidden" }, caption),
    cols.length ? el("colgroup", {}, cols) : null,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)))),
    el(
      "tbody",
      {},
      rows.map((cells) => el("tr", {}, cells.map((cell, i) => el("td", { dataset: { label: columns[i] } }, cell)))),
    ),
  );
}

export function card(title, sub, actions, ...body) {
  return el(
    "section",
    { class: "card flush", "aria-label": title },
    el("div", { class: "card-head" }, el("div", {}, el("h2", {}, title), sub ? el("div", { class: "sub" }, sub) : null), actions || null),
    ...body,
  );
}

export function empty(text) {
  return el("div", { class: "card" }, el("p", { class: "empty" }, text));
}

export function show(content, ...nodes) {
  const region = document.getElementById("content");
  region.replaceChildren(...nodes);
  region.setAttribute("aria-busy", "false");
  return region;
}

// -- notices and the confirmation dialog ----------------------------------------------

export function notify(text, ok = true) {
  const region = document.getElementById("notice");
  const close = el("button", { type: "button", class: "quiet" }, "Dismiss");
  const box = el("div", { class: `notice ${ok ? "ok" : "bad"}`, tabindex: "-1" }, el("p", {}, text), close);
  close.addEventListener("click", () => {
    region.replaceChildren();
    document.getElementById("main").focus();
  });
  region.replaceChildren(box);
  return box;
}

/** Ask once; resolves true when the user confirms. Focus returns where it was. */
export function confirmAction(title, text, confirmLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = confirmLabel;
  const back = document.activeElement;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (back && back.focus) back.focus();
        resolve(dialog.returnValue === "confirm");
      },
      { once: true },
    );
  });
}

/** Confirm, run ``action``, show its ``message``, then ``after``. */
export async function act(title, text, label, action, after) {
  if (!(await confirmAction(title, text, label))) return;
  let box;
  try {
    const result = await action();
    box = notify(result.message || "Done.", true);
  } catch (error) {
    box = notify(`Nothing changed: ${error.message}`, false);
  }
  if (after) await after();
  box.focus(); // the button may be gone with what it revoked: the result takes focus
}

// -- the live stream ---------------------------------------------------------------------

/** Server-Sent Events from the audit log; ``onEvent(outcome, event, id)`` per event,
 * ``onReady()`` once the past events asked for have arrived, ``onSkipped({count, first,
 * last})`` when a flood's older events were not sent live (only the newest of each batch).
 * The browser reconnects by itself and resumes from the last id (Last-Event-ID). */
export function stream(params, onEvent, onState, onReady, onSkipped) {
  const query = new URLSearchParams(params).toString();
  const source = new EventSource(`/dashboard/api/events?${query}`);
  source.addEventListener("audit", (message) => {
    const data = JSON.parse(message.data);
    onEvent(data.outcome, data.event, Number(message.lastEventId));
  });
  if (onReady) source.addEventListener("ready", onReady);
  if (onSkipped) source.addEventListener("skipped", (message) => onSkipped(JSON.parse(message.data)));
  source.addEventListener("gap", (message) => notify(`Some events were skipped: ${message.data}. Reload to see all.`, false));
  if (onState) {
    source.addEventListener("open", () => onState(true));
    source.addEventListener("error", () => onState(false));
  }
  return source;
}

/** A ``changed`` note per batch of new events (names and counts), not the events:
 * for pages that reload their data when something happens. */
export function pulse(params, onChange) {
  const query = new URLSearchParams({ ...params, mode: "pulse" }).toString();
  const source = new EventSource(`/dashboard/api/events?${query}`);
  source.addEventListener("changed", (message) => onChange(JSON.parse(message.data).events));
  return source;
}

/** Call ``fn`` once things settle: at most every ``gap`` ms, ``wait`` ms after a burst. */
export function settle(fn, wait = 400, gap = 1500) {
  let timer = null;
  let last = 0;
  return () => {
    if (timer) return;
    const delay = Math.max(wait, last + gap - Date.now());
    timer = setTimeout(async () => {
      timer = null;
      last = Date.now();
      await fn();
    }, delay);
  };
}

export function failed(error) {
  show(null, el("div", { class: "notice bad", role: "alert" }, el("p", {}, `Could not load this page: ${error.message}`)));
}
