// Overview: one row per agent — status, permissions in words, live credentials with
// the soonest expiry counting down, last API call, and the last hour as a sparkline.
import { ago, api, badge, card, countdown, el, empty, pulse, settle, show, table, words } from "./common.js";
import { sparkline } from "./sparkline.js";

const STATUS = { active: "ok", revoked: "bad", disabled: "warn" };

function stat(label, value, bad) {
  return el("div", { class: "stat" }, el("div", { class: "label" }, label), el("div", { class: `value ${bad ? "bad" : ""}` }, String(value)));
}

function agentCell(agent) {
  return el("div", {}, el("strong", {}, agent.display_name), el("span", { class: "id" }, agent.id));
}

function statusCell(agent) {
  const running = agent.live > 0 ? badge("running", "info") : null;
  return el("div", {}, badge(agent.status, STATUS[agent.status]), " ", running, agent.status_reason ? el("span", { class: "id" }, agent.status_reason) : null);
}

function liveCell(agent) {
  if (!agent.live) return el("span", { class: "empty" }, "none");
  return el("div", {}, el("strong", {}, String(agent.live)), el("span", { class: "id" }, "next expiry ", countdown(agent.soonest_expiry)));
}

function lastCall(call) {
  if (!call) return el("span", { class: "empty" }, "none yet");
  return el("div", {}, el("code", {}, `${call.method} ${call.path}`), el("span", { class: "id" }, `→ ${call.status}, ${ago(call.ts)}`));
}

function render(data) {
  const t = data.totals;
  const stats = el(
    "div",
    { class: "stats" },
    stat("Agents", t.agents),
    stat("Live credentials", t.live),
    stat("Issued, last hour", t.issued),
    stat("API calls, last hour", t.calls),
    stat("Denied, last hour", t.denied, t.denied > 0),
  );
  if (!data.agents.length) {
    return show(null, stats, empty("No agents yet: create one with 'kontext agent create NAME --allow github:pulls:read'."));
  }
  const rows = data.agents.map((agent) => [
    agentCell(agent),
    statusCell(agent),
    words(agent.permissions),
    liveCell(agent),
    lastCall(agent.last_call),
    sparkline(agent.activity),
  ]);
  const legend = el("div", { class: "legend", "aria-hidden": "true" }, el("span", { class: "issued" }, "issued"), el("span", { class: "calls" }, "API calls"), el("span", { class: "denied" }, "denied"));
  return show(
    null,
    stats,
    card("Agents", "Activity per minute over the last hour", legend, table("Agents", ["Agent", "Status", "Permissions", "Live credentials", "Last API call", "Last hour"], rows)),
  );
}

export async function start() {
  const load = async () => render(await api("overview"));
  await load();
  const again = settle(load, 500, 3000);
  pulse({ scope: "state" }, again);
  setInterval(load, 30000); // the sparkline's minutes move on
}
