// Live credentials, grouped by agent, with the process that holds each one and a
// countdown to its expiry; revoke one credential, the agent, or the agent and its
// processes — each asks once, saying what it will end, then shows what it did.
import { act, api, card, countdown, el, empty, post, pulse, settle, show, table, when, words } from "./common.js";

const KINDS = { exchange: "exchanged (RFC 8693)", code: "from a consent code" };

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : word.endsWith("s") ? "es" : "s"}`;
}

async function revokeAgent(agent, kill, reload) {
  const c = await api(`agents/${encodeURIComponent(agent.replace(/^agent:/, ""))}/consequences`);
  const what = `${c.agent}: ${plural(c.live, "live credential")}, ${plural(c.processes, "process")}; other agents keep running.`;
  const how = kill
    ? "Its credentials end now and its processes are stopped (SIGTERM, then SIGKILL after 3 seconds)."
    : "Its credentials end now: its processes keep running, but every call they make is refused.";
  await act(
    kill ? "Revoke agent and kill its processes?" : "Revoke agent?",
    `${what}\n${how}\nThe agent stays disabled until 'kontext agent enable ${c.agent.replace(/^agent:/, "")}'.`,
    kill ? "Revoke and kill" : "Revoke agent",
    () => post("revoke-agent", { agent: c.agent, kill }),
    reload,
  );
}

function revokeCredential(cred, reload) {
  return act(
    "Revoke this credential?",
    `Credential ${cred.jti} of ${cred.agent} ends now, with any exchanged from it: the next call with it is refused.\n` +
      "Its process keeps running; the agent's other credentials and other agents are not touched.",
    "Revoke credential",
    () => post("revoke-credential", { jti: cred.jti }),
    reload,
  );
}

function processCell(cred) {
  if (!cred.pid) return el("span", { class: "empty" }, "unknown");
  return el("div", {}, el("span", {}, `pid ${cred.pid}`, cred.process === "wrapper" ? " (kontext exec)" : ""), cred.command ? el("code", { class: "command" }, cred.command) : el("span", { class: "id" }, "the process has ended"));
}

function group(agent, creds, reload) {
  const buttons = el(
    "div",
    { class: "actions" },
    el("button", { type: "button", class: "danger-outline", onclick: () => revokeAgent(agent, false, reload) }, "Revoke agent"),
    el("button", { type: "button", class: "danger", onclick: () => revokeAgent(agent, true, reload) }, "Revoke agent and kill its processes"),
  );
  const rows = creds.map((cred) => [
    el("div", {}, el("code", {}, cred.jti), cred.kind && cred.kind !== "exec" ? el("span", { class: "id" }, KINDS[cred.kind] || cred.kind) : null),
    words(cred.scopes),
    cred.target ? el("code", {}, cred.target) : el("span", { class: "empty" }, "any"),
    processCell(cred),
    when(cred.issued_at),
    countdown(cred.expires_at),
    cred.parent ? el("code", {}, cred.parent) : el("span", { class: "empty" }, "—"),
    el("button", { type: "button", class: "danger-outline", "aria-label": `Revoke credential ${cred.jti}`, onclick: () => revokeCredential(cred, reload) }, "Revoke credential"),
  ]);
  const title = `${creds[0].agent_display}`;
  return card(
    title,
    `${agent} · ${plural(creds.length, "live credential")}`,
    buttons,
    table(
      `Live credentials of ${agent}`,
      ["Credential", "Scopes", "Target", "Process", "Issued", "Expires", "Parent", "Action"],
      rows,
      ["12%", "18%", "11%", "20%", "7%", "9%", "7%", "16%"],
    ),
  );
}

function render(data, reload) {
  if (!data.credentials.length) {
    return show(null, empty("No live credentials: nothing is running as an agent right now."));
  }
  const byAgent = new Map();
  for (const cred of data.credentials) {
    if (!byAgent.has(cred.agent)) byAgent.set(cred.agent, []);
    byAgent.get(cred.agent).push(cred);
  }
  return show(null, ...[...byAgent].map(([agent, creds]) => group(agent, creds, reload)));
}

export async function start() {
  const load = async () => render(await api("credentials"), load);
  await load();
  const again = settle(load, 200, 800);
  pulse({ scope: "state" }, (events) => {
    if (Object.keys(events).some((name) => !name.startsWith("api."))) again();
  });
}
