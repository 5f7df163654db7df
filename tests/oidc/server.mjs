// A real third-party OpenID Connect provider (npm oidc-provider) for the
// `kontext login --issuer` tests. Prints its issuer URL, then serves.
// Its dev login/consent pages accept any login name and password.
// POST /__test__/forget drops every grant and token it holds, so the next
// refresh is refused (the provider "no longer knows the user").
// Flags: --par-required (require_pushed_authorization_requests, RFC 9126 §5) and
// --userinfo-claims (OIDC Core as written, the library's default: with
// response_type=code, email and name only from UserInfo, not in the ID token)
// and --unverified-email (the email without email_verified, as some providers send it).
import http from "node:http";
import Provider from "oidc-provider";

const store = new Map();
class MemoryAdapter {
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload) { store.set(this.key(id), payload); }
  async find(id) { return store.get(this.key(id)); }
  async findByUserCode() { return undefined; }
  async findByUid(uid) {
    for (const [k, v] of store) if (k.startsWith(`${this.name}:`) && v.uid === uid) return v;
    return undefined;
  }
  async consume(id) { const v = store.get(this.key(id)); if (v) v.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const [k, v] of store) if (v.grantId === grantId) store.delete(k);
  }
}

const flags = new Set(process.argv.slice(2).filter((a) => a.startsWith("--")));
const port = Number(process.argv.slice(2).find((a) => !a.startsWith("--")) || 0);
const server = http.createServer();
server.listen(port, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    adapter: MemoryAdapter,
    clients: [{
      client_id: "kontext-test",
      application_type: "native",
      token_endpoint_auth_method: "none",
      redirect_uris: ["http://127.0.0.1/callback"],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    }],
    pkce: { required: () => true },
    // false: email in the ID token, as most providers do; true: only on UserInfo.
    conformIdTokenClaims: flags.has("--userinfo-claims"),
    scopes: ["openid", "email", "profile", "offline_access"],
    claims: { email: ["email", "email_verified"], profile: ["name"] },
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      claims: async () => ({
        sub,
        email: `${sub}@example.org`,
        ...(flags.has("--unverified-email") ? {} : { email_verified: true }),
        name: sub,
      }),
    }),
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      pushedAuthorizationRequests: {
        enabled: true,
        requirePushedAuthorizationRequests: flags.has("--par-required"),
      },
    },
    ttl: { AccessToken: 600, IdToken: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  });
  provider.on("server_error", (ctx, err) => console.error(err));
  const callback = provider.callback();
  server.on("request", (req, res) => {
    if (req.method === "POST" && req.url === "/__test__/forget") {
      store.clear();
      res.writeHead(204).end();
      return;
    }
    callback(req, res);
  });
  console.log(issuer);
});
