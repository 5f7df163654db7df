// A certified third-party relying party (npm openid-client) against kontext's
// embedded issuer. Usage: node rp.mjs ISSUER CLIENT_ID SECRET_FILE REDIRECT_URI ALG
// It discovers the issuer, pushes the request (PAR, client_secret_basic, PKCE,
// state, nonce, id_token_signed_response_alg=ALG), prints {"url": ...}, reads the
// callback URL the browser reached from stdin, redeems the code (openid-client
// checks iss (RFC 9207), state, PKCE, the ID token's signature, alg, nonce...),
// refreshes, introspects the new refresh token and prints what it saw.
import { readFileSync } from "node:fs";
import * as client from "openid-client";

const [issuer, clientId, secretFile, redirectUri, alg] = process.argv.slice(2);
const secret = readFileSync(secretFile, "utf8").trim();
const config = await client.discovery(
  new URL(issuer),
  clientId,
  { id_token_signed_response_alg: alg },
  client.ClientSecretBasic(secret),
  { execute: [client.allowInsecureRequests] }, // loopback http (RFC 8252 §8.3)
);
const verifier = client.randomPKCECodeVerifier();
const nonce = client.randomNonce();
const state = client.randomState();
const url = await client.buildAuthorizationUrlWithPAR(config, {
  redirect_uri: redirectUri,
  scope: "openid offline_access",
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  nonce,
  state,
  id_token_signed_response_alg: alg,
});
console.log(JSON.stringify({ url: url.href }));

let input = "";
for await (const chunk of process.stdin) input += chunk;
const tokens = await client.authorizationCodeGrant(config, new URL(input.trim()), {
  pkceCodeVerifier: verifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
});
const header = JSON.parse(Buffer.from(tokens.id_token.split(".")[0], "base64url").toString());
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
const seen = await client.tokenIntrospection(config, refreshed.refresh_token);
console.log(
  JSON.stringify({
    sub: tokens.claims().sub,
    id_token_alg: header.alg,
    refreshed: typeof refreshed.access_token === "string",
    introspected: { active: seen.active, token_type: seen.token_type },
  }),
);
