// Policy: the loaded Cedar files with any error, and an "explain" form that runs the
// same dry run as `kontext policy explain` (nothing is minted or audited).
import { api, badge, el, post, show } from "./common.js";

const LAYERS = { org_policy: "Org policy", user_consent: "User consent", agent_permissions: "Agent permissions" };

function files(data) {
  const errors = data.errors.length
    ? el("div", { class: "notice bad", role: "alert" }, el("div", {}, el("p", {}, el("strong", {}, "The policy does not load: every request is denied until it is fixed.")), el("ul", { class: "error-list" }, data.errors.map((e) => el("li", {}, e)))))
    : null;
  const list = data.files.length
    ? el("ul", { class: "file-list" }, data.files.map((f) => el("li", {}, el("code", {}, f))))
    : el("p", { class: "empty" }, `No policy files: only the built-in rules apply. Put .cedar files in ${data.dirs.join(" or ")}.`);
  const ids = Object.entries(data.policies);
  return el(
    "section",
    { class: "card", "aria-label": "Loaded policy" },
    el("h2", {}, "Loaded files"),
    errors,
    list,
    ids.length ? el("details", {}, el("summary", {}, `${ids.length} policies`), el("ul", {}, ids.map(([id, where]) => el("li", {}, el("code", {}, id), ` ${where}`)))) : null,
  );
}

function result(answer) {
  return el(
    "div",
    { class: `notice ${answer.allowed ? "ok" : "bad"}` },
    el(
      "div",
      {},
      el("p", {}, el("strong", {}, answer.allowed ? "Allowed: " : "Denied: "), answer.allowed ? `${answer.agent} would get ${answer.scopes.join(" ")} for ${answer.ttl}s.` : answer.message),
      el(
        "table",
        { class: "verdicts" },
        el("caption", { class: "visually-hidden" }, "Each layer's verdict"),
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Layer"), el("th", { scope: "col" }, "Verdict"), el("th", { scope: "col" }, "Reason"))),
        el("tbody", {}, answer.layers.map((v) => el("tr", {}, el("td", {}, LAYERS[v.layer] || v.layer), el("td", {}, badge(v.decision, v.decision === "allow" ? "ok" : "bad")), el("td", {}, v.reason)))),
      ),
    ),
  );
}

function form(data) {
  const out = el("div", { role: "status", "aria-live": "polite" });
  const agent = el("select", { name: "agent", id: "explain-agent", required: true }, data.agents.map((a) => el("option", { value: a.name }, a.id)));
  const target = el("input", { type: "text", name: "target", id: "explain-target", placeholder: "e.g. acme-corp/backend", autocomplete: "off" });
  const ttl = el("input", { type: "number", name: "ttl", id: "explain-ttl", min: 10, max: 86400, placeholder: "default" });
  const boxes = el("div", { class: "checks" }, data.scopes.map((s) => el("label", {}, el("input", { type: "checkbox", name: "scope", value: s }), s)));
  const node = el(
    "form",
    { class: "form", "aria-label": "Explain a request" },
    el("label", { for: "explain-agent" }, "Agent", agent),
    el("label", { for: "explain-target" }, "Target (optional)", target),
    el("label", { for: "explain-ttl" }, "TTL in seconds (optional)", ttl),
    el("fieldset", { class: "wide" }, el("legend", {}, "Scopes (none: the agent's own permissions)"), boxes),
    el("div", { class: "wide" }, el("button", { type: "submit", class: "primary" }, "Explain")),
  );
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { agent: agent.value, scopes: [...boxes.querySelectorAll("input:checked")].map((b) => b.value) };
    if (target.value.trim()) body.target = target.value.trim();
    if (ttl.value) body.ttl = Number(ttl.value);
    try {
      out.replaceChildren(result(await post("explain", body)));
    } catch (error) {
      out.replaceChildren(el("div", { class: "notice bad" }, el("p", {}, error.message)));
    }
  });
  return el("section", { class: "card", "aria-label": "Explain a request" }, el("h2", {}, "Explain a request"), el("p", { class: "lede" }, "Runs every layer of the request path as an exec without a terminal would, without issuing anything."), data.agents.length ? node : el("p", { class: "empty" }, "No agents to explain a request for."), out);
}

export async function start() {
  const data = await api("policy");
  show(null, files(data), form(data));
}
