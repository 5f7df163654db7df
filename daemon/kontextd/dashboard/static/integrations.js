// Integrations: connected or not, how, how credentials reach the child, route rules.
// Never a secret: the daemon sends none.
import { api, badge, card, el, show, table, when } from "./common.js";

const DELIVERY = {
  broker: "Broker: the child gets a kontext token and the gateway's URL; the upstream secret stays in the daemon",
  token: "Token: the child gets the provider's own short-lived access token",
};
const METHOD = { api_key: "API key", oauth: "OAuth" };

function connection(item) {
  if (!item.connected) return el("div", {}, badge("not connected", "warn"), el("span", { class: "id" }, `kontext integration connect ${item.name}`));
  return el("div", {}, badge("connected", "ok"), el("span", { class: "id" }, `${METHOD[item.method] || item.method}`, item.connected_at ? [", since ", when(item.connected_at)] : null));
}

function rules(item) {
  if (!item.routes.length) return el("p", { class: "empty" }, "No route rules: the gateway does not forward calls for it.");
  return table(
    `Route rules of ${item.display_name}`,
    ["Request", "Needs scope", "Target"],
    item.routes.map((r) => [el("code", {}, r.rule), el("code", {}, r.scope), r.target ? el("code", {}, r.target) : el("span", { class: "empty" }, "—")]),
  );
}

export async function start() {
  const data = await api("integrations");
  show(
    null,
    ...data.integrations.map((item) =>
      card(
        item.display_name,
        `${item.name} · ${item.base_url || "no base URL"}`,
        connection(item),
        el(
          "div",
          { class: "card" },
          el("p", {}, el("strong", {}, "Delivery: "), DELIVERY[item.delivery] || item.delivery),
          el("p", {}, el("strong", {}, "Environment: "), item.env.map((v) => el("code", {}, v, " "))),
          el("p", {}, el("strong", {}, "Scopes: "), item.scopes.map((s) => s.words).join("; ")),
        ),
        rules(item),
      ),
    ),
  );
}
