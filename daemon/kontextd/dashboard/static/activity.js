// Activity: the audit trail streaming live (Server-Sent Events), filtered by agent,
// event and outcome; each line opens to the full event and every layer's verdict.
// At the top, `kontext audit verify`'s answer and the last signed checkpoint.
import { api, badge, clock, el, show, stream, when } from "./common.js";

const OUTCOME = { allowed: "ok", denied: "bad", ended: "warn", other: "" };
const KEEP = 500; // lines kept on the page
const LAYERS = { org_policy: "Org policy", user_consent: "User consent", agent_permissions: "Agent permissions" };

function detail(e) {
  const scopes = Array.isArray(e.scopes) ? e.scopes.join(" ") : "";
  switch (e.event) {
    case "credential.issued":
      return `${scopes}${e.target ? ` on ${e.target}` : ""}, ${e.expires_in || ""}${e.pid ? `, pid ${e.pid}` : ""}`;
    case "api.call":
    case "api.denied":
      return `${e.method || ""} ${e.path || ""} → ${e.status ?? ""}${e.reason ? ` (${e.reason})` : ""}`;
    case "consent.granted":
      return `${scopes}${e.target ? ` on ${e.target}` : ""}`;
    case "http.refused":
      return `${e.method || ""} ${e.path || ""}: ${e.reason || ""}`;
    default:
      return e.reason || scopes || (e.jti ? `credential ${e.jti}` : "");
  }
}

function verdicts(e) {
  const decisions = e.policy_evaluation;
  if (!decisions || typeof decisions !== "object") return null;
  const reasons = e.reasons || {};
  return el(
    "table",
    { class: "verdicts" },
    el("caption", { class: "visually-hidden" }, "Each layer's verdict"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Layer"), el("th", { scope: "col" }, "Verdict"), el("th", { scope: "col" }, "Reason"))),
    el(
      "tbody",
      {},
      Object.entries(decisions).map(([layer, decision]) =>
        el("tr", {}, el("td", {}, LAYERS[layer] || layer), el("td", {}, badge(decision, decision === "allow" ? "ok" : "bad")), el("td", {}, reasons[layer] || "")),
      ),
    ),
  );
}

function line(outcome, e, fresh) {
  const agent = e.agent && e.agent.id ? e.agent.id : "";
  const user = e.user && e.user.id ? e.user.id : "";
  const via = e.via ? ` (via ${e.via})` : "";
  const body = el("div", { class: "event-body" }, verdicts(e), el("pre", {}, JSON.stringify(e, null, 2)));
  const summary = el(
    "summary",
    {},
    el("span", { class: "when" }, clock(e.ts)),
    el("span", {}, badge(outcome, OUTCOME[outcome])),
    el("span", { class: "name" }, e.event),
    el("span", { class: "agent" }, agent),
    el("span", { class: "detail" }, (detail(e) || (user ? `by ${user}` : "")) + via),
  );
  return el("li", { class: fresh ? "fresh" : "", dataset: { id: String(e.id) } }, el("details", {}, summary, body));
}

function verifyCard(result, again) {
  const cp = result.checkpoint;
  const anchor = result.anchor;
  const lines = [];
  if (result.intact === true) {
    lines.push(`${result.events} events and ${result.checkpoints} signed checkpoints check out against the anchor pinned outside the database.`);
    lines.push(cp ? `Last signed checkpoint: event ${cp.event_id}, ${clock(cp.signed_at)} (key ${cp.kid}).` : "No signed checkpoint yet.");
    if (anchor) lines.push(`Pinned anchor: ${anchor.event_id ? `checkpoint at event ${anchor.event_id}` : "no checkpoint yet"}, in ${anchor.where}.`);
    if (result.unsigned) lines.push(`Events ${result.unsigned.first}–${result.unsigned.last} are not signed yet (the daemon signs them shortly).`);
  } else {
    lines.push(`${result.message}.`);
  }
  const state = result.intact === true ? "ok" : "bad";
  const title = result.intact === true ? "Audit chain intact" : result.intact === false ? "Audit chain broken" : "Audit chain not verified";
  return el(
    "section",
    { class: `card verify ${state}`, "aria-label": "Audit verification", role: result.intact === true ? null : "alert" },
    el("div", {}, el("div", { class: "title" }, title), lines.map((text) => el("p", {}, text)), el("p", { class: "when" }, `Checked ${clock(result.checked_at)} in ${result.seconds}s`)),
    el("button", { type: "button", onclick: again }, "Verify again"),
  );
}

function select(name, label, options, value) {
  return el(
    "label",
    {},
    label,
    el("select", { name }, el("option", { value: "" }, "All"), options.map(([v, text]) => el("option", { value: v, selected: v === value }, text))),
  );
}

export async function start() {
  const params = new URLSearchParams(window.location.search);
  const filters = await api("filters");
  const chosen = { agent: params.get("agent") || "", event: params.get("event") || "", outcome: params.get("outcome") || "" };
  const verifyRegion = el("div", {}, el("div", { class: "card" }, el("p", { class: "loading" }, "Verifying the audit chain…")));
  const list = el("ol", { class: "events", "aria-label": "Audit events, newest first" });
  const liveState = el("span", { class: "live off" }, el("span", { class: "dot", "aria-hidden": "true" }), el("span", {}, "connecting"));
  const counter = el("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const form = el(
    "form",
    { class: "filters", method: "get", action: "/dashboard/activity" },
    select("agent", "Agent", filters.agents.map((a) => [a, `agent:${a}`]), chosen.agent),
    select("event", "Event", filters.events.map((n) => [n, n]), chosen.event),
    select("outcome", "Outcome", filters.outcomes.map((o) => [o, o]), chosen.outcome),
    el("button", { type: "submit", class: "primary" }, "Apply filters"),
    liveState,
  );
  const verify = async () => {
    try {
      verifyRegion.replaceChildren(verifyCard(await api("verify"), verify));
    } catch (error) {
      verifyRegion.replaceChildren(el("div", { class: "notice bad" }, el("p", {}, `Could not verify: ${error.message}`)));
    }
  };
  show(
    null,
    verifyRegion,
    el("section", { class: "card", "aria-label": "Filters" }, form),
    el("section", { class: "card flush", "aria-label": "Events" }, el("div", { class: "card-head" }, el("h2", {}, "Events"), el("span", { class: "sub" }, "newest first · open a line for the full event")), list),
    counter,
  );
  verify();
  let loaded = false;
  let pending = 0;
  let announce = null;
  const query = { history: 200 };
  for (const [key, value] of Object.entries(chosen)) if (value) query[key] = value;
  stream(
    query,
    (outcome, event) => {
      const placeholder = list.querySelector(".placeholder");
      if (placeholder) placeholder.remove();
      list.prepend(line(outcome, event, loaded));
      while (list.children.length > KEEP) list.lastElementChild.remove();
      if (!loaded) return;
      pending += 1; // tell screen readers how many arrived, at most every few seconds
      if (!announce) {
        announce = setTimeout(() => {
          counter.textContent = `${pending} new event${pending === 1 ? "" : "s"}`;
          pending = 0;
          announce = null;
        }, 3000);
      }
    },
    (up) => {
      liveState.className = `live ${up ? "" : "off"}`;
      liveState.lastElementChild.textContent = up ? "live" : "reconnecting";
    },
    () => {
      loaded = true;
      if (!list.children.length) list.append(el("li", { class: "placeholder" }, el("p", { class: "empty" }, "No events match yet; new ones appear here as they happen.")));
    },
    (skipped) => {
      // A flood: the daemon sent only the newest events of a batch. Say so in place.
      const n = skipped.count;
      const text = `${n} event${n === 1 ? "" : "s"} (ids ${skipped.first}–${skipped.last}) not shown live; they are in the audit log ('kontext audit export').`;
      list.prepend(el("li", { class: "skipped", dataset: { first: String(skipped.first), last: String(skipped.last) } }, el("p", { class: "empty" }, text)));
      while (list.children.length > KEEP) list.lastElementChild.remove();
    },
  );
}
