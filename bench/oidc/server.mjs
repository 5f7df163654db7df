// Baseline for bench/run.py: a widely used third-party OAuth server (npm
// oidc-provider) doing the grant closest to a kontext issuance:
// client_credentials at /token, a JWT access token (at+jwt) signed with ES256
// for one resource (RFC 8707), 10-minute lifetime. Prints its port, then serves.
import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "bench", alg: "ES256", use: "sig" };

const provider = new Provider("http://127.0.0.1", {
  clients: [
    {
      client_id: "bench",
      client_secret: "bench-secret-not-a-real-one-0123456789",
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: "ES256",
    },
  ],
  jwks: { keys: [jwk] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => "urn:kontext:github",
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: "pulls:read pulls:write",
        accessTokenFormat: "jwt",
        accessTokenTTL: 600,
        jwt: { sign: { alg: "ES256" } },
      }),
    },
  },
});
provider.on("server_error", (ctx, err) => console.error(err));
const server = provider.listen(0, "127.0.0.1", () => {
  console.log(server.address().port);
});
