// npm openid-client as a public MCP-style client of kontext's embedded issuer.
// Usage: node mcp_rp.mjs ISSUER REDIRECT_URI RESOURCE
// It registers itself (RFC 7591, token_endpoint_auth_method none), prints
// {"url": ..., "client_id": ...} for a front-channel authorization request (no
// PAR: a public client has no secret to push with) with PKCE S256 and the RFC 8707
// resource, reads the callback URL the browser reached from stdin, redeems the
// code (openid-client checks state, RFC 9207 iss and PKCE), refreshes, and prints
// what it got.
import * as client from "openid-client";

const [issuer, redirectUri, resource] = process.argv.slice(2);
const config = await client.dynamicClientRegistration(
  new URL(issuer),
  {
    client_name: "openid-client as an MCP client",
    redirect_uris: [redirectUri],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  },
  client.None(),
  { execute: [client.allowInsecureRequests] }, // loopback http (RFC 8252 §8.3)
);
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: "github:pulls:read",
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  state,
  resource,
});
console.log(JSON.stringify({ url: url.href, client_id: config.clientMetadata().client_id }));

let input = "";
for await (const chunk of process.stdin) input += chunk;
const tokens = await client.authorizationCodeGrant(
  config,
  new URL(input.trim()),
  { pkceCodeVerifier: verifier, expectedState: state },
  { resource },
);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, { resource });
console.log(
  JSON.stringify({
    access_token: tokens.access_token,
    scope: tokens.scope,
    refreshed: typeof refreshed.access_token === "string" && refreshed.refresh_token !== tokens.refresh_token,
  }),
);
