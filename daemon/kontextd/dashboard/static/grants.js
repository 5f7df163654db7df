// Consent grants of this session, per agent, in the consent page's words; revoke one.
import { act, api, card, countdown, el, empty, post, pulse, settle, show, table, when, words } from "./common.js";

function revoke(grant, reload) {
  return act(
    "Revoke this grant?",
    `${grant.agent} loses your approval of: ${grant.scopes.map((s) => s.words).join("; ")}.\n` +
      `${grant.live} live credential${grant.live === 1 ? "" : "s"} resting on it end now; its next exec asks for your consent again.\n` +
      "Other grants and agents are not touched.",
    "Revoke grant",
    () => post("revoke-grant", { grant: grant.id }),
    reload,
  );
}

function render(data, reload) {
  if (!data.grants.length) {
    return show(null, empty(`No live grants for ${data.user}: an agent's first exec asks for consent in the browser.`));
  }
  const byAgent = new Map();
  for (const grant of data.grants) {
    if (!byAgent.has(grant.agent)) byAgent.set(grant.agent, []);
    byAgent.get(grant.agent).push(grant);
  }
  const cards = [...byAgent].map(([agent, list]) =>
    card(
      list[0].agent_display,
      `${agent} · ${list.length} grant${list.length === 1 ? "" : "s"}`,
      null,
      table(
        `Grants to ${agent}`,
        ["Approved", "Target", "Granted", "Expires", "Action"],
        list.map((grant) => [
          words(grant.scopes),
          grant.target ? el("code", {}, grant.target) : el("span", { class: "empty" }, "any target"),
          when(grant.created_at),
          countdown(grant.expires_at),
          el("button", { type: "button", class: "danger-outline", "aria-label": `Revoke grant to ${agent}: ${grant.scopes.map((s) => s.words).join(", ")}`, onclick: () => revoke(grant, reload) }, "Revoke grant"),
        ]),
        ["44%", "16%", "12%", "14%", "14%"],
      ),
    ),
  );
  return show(null, el("p", { class: "lede spaced" }, `Approved by ${data.user}${data.session ? ` (signed in at ${data.session.issuer})` : " (local account)"}.`), ...cards);
}

export async function start() {
  const load = async () => render(await api("grants"), load);
  await load();
  const again = settle(load, 200, 800);
  pulse({ scope: "state" }, (events) => {
    if (Object.keys(events).some((name) => /^(consent|session)\./.test(name))) again();
  });
}
