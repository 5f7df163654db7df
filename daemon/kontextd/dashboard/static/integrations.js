// Integrations: connected or not, how, how credentials reach the child, route rules.
// Never a secret: the daemon sends none.
import { api, badge, card, el, show, table, when } from "./common.js";

const DELIVERY = {
  broker: "Broker: the child gets a kontext token and the gateway's URL; the upstream secret stays in the daemon",
  token: "Token: the child gets the provider's own short-lived access token",
};
const METHOD = { api_key: "API key", oauth: "OAuth" };

function connection(item) {
  if (!item.connected) {
    return el("div", { class: "connection" }, badge("not connected", "warn"), el("code", { class: "id" }, `kontext integration connect ${item.name}`));
  }
  const how = `${METHOD[item.method] || item.method}`;
  return el("div", { class: "connection" }, badge("connected", "ok"), el("span", { class: "id" }, how, item.connected_at ? [" since ", when(item.connected_at)] : null));
}

function rules(item) {
  if (!item.routes.length) return el("p", { class: "card-body empty" }, "No route rules: the gateway forwards no call for it.");
  return el(
    "details",
    { class: "rules" },
    el("summary", {}, `Route rules (${item.routes.length}): what the gateway forwards, and the scope each call needs`),
    table(
      `Route rules of ${item.display_name}`,
      ["Request", "Needs scope", "Target"],
      item.routes.map((r) => [el("code", {}, r.rule), el("code", {}, `${item.name}:${r.scope}`), r.target ? el("code", {}, r.target) : el("span", { class: "empty" }, "—")]),
    ),
  );
}

function facts(item) {
  return el(
    "div",
    { class: "card-body" },
    el(
      "dl",
      {},
      el("dt", {}, "Delivery"),
      el("dd", {}, DELIVERY[item.delivery] || item.delivery),
      el("dt", {}, "Environment"),
      el("dd", {}, item.env.map((v, i) => [i ? " " : "", el("code", {}, v)])),
      el("dt", {}, "Scopes"),
      el("dd", {}, item.scopes.map((s) => s.words).join(" · ")),
    ),
  );
}

export async function start() {
  const data = await api("integrations");
  show(
    null,
    ...data.integrations.map((item) =>
      card(item.display_name, `${item.name} · ${item.base_url || "no base URL"}`, connection(item), facts(item), rules(item)),
    ),
  );
}
