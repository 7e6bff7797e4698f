// oidc-provider (panva) standing in for Mekarge A3, configured the way A3's quickstart configures
// the MCP Host client: one predefined confidential client (client_secret_post only), PKCE required,
// the bridge's callback as its only redirect URI, RFC 8707 resource indicators giving RS256 JWT
// access tokens with aud = the MCP resource, scope mcp:call (+ mcp:admin for step-up), A3 Contexts
// per user in the `contexts` claim, refresh tokens, login through oidc-provider's own
// (development) interaction pages.
//
// env: AS_PORT (9000), MCP_RESOURCE (http://127.0.0.1:8000/mcp), PROXY_REDIRECT
// ({origin of MCP_RESOURCE}/auth/callback), CLIENT_ID (mcp-proxy), CLIENT_SECRET (proxy-secret),
// AS_AT_TTL (300 s), AS_SHORT_TTL (5 s: access-token lifetime for the user "shortlived@test.com").
//
// Test-only extra: GET /__interop/stats gives counters of what the provider did (grants by type,
// revocations), so the suite can see that the bridge refreshed and revoked upstream.
import * as oidc from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';

const PORT = Number(process.env.AS_PORT ?? 9000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const RESOURCE = process.env.MCP_RESOURCE ?? 'http://127.0.0.1:8000/mcp';
const PROXY_REDIRECT = process.env.PROXY_REDIRECT ?? `${new URL(RESOURCE).origin}/auth/callback`;
const CLIENT_ID = process.env.CLIENT_ID ?? 'mcp-proxy';
const CLIENT_SECRET = process.env.CLIENT_SECRET ?? 'proxy-secret';
const AT_TTL = Number(process.env.AS_AT_TTL ?? 300);
const SHORT_TTL = Number(process.env.AS_SHORT_TTL ?? 5);
export const SHORT_LIVED_USER = 'shortlived@test.com';

// A3 Contexts per user (the quickstart's roles): everybody holds operation=addition, Jane (and the
// short-lived-token user) also operation=multiplication.
function contextsOf(accountId) {
  if (accountId === 'janedoe@test.com' || accountId === SHORT_LIVED_USER) {
    return { operation: ['addition', 'multiplication'] };
  }
  return { operation: ['addition'] };
}

const stats = { grants: {}, revocations: 0, grantsRevoked: 0, authorizations: 0, errors: [] };

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', alg: 'RS256', use: 'sig' };

const provider = new oidc.Provider(ISSUER, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    token_endpoint_auth_method: 'client_secret_post',
    redirect_uris: [PROXY_REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  clientAuthMethods: ['client_secret_post'],
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access'],
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, email: sub }),
  }),
  features: {
    devInteractions: { enabled: true }, // TEST ONLY: any login, any password
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) throw new oidc.errors.InvalidTarget();
        return {
          scope: 'mcp:call mcp:admin',
          audience: resourceIndicator,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: (ctx, token) => (token.accountId === SHORT_LIVED_USER ? SHORT_TTL : AT_TTL),
  },
  extraTokenClaims: async (ctx, token) => (token.accountId ? { contexts: contextsOf(token.accountId) } : undefined),
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
});

provider.on('grant.success', (ctx) => {
  const type = ctx.oidc.params?.grant_type ?? 'unknown';
  stats.grants[type] = (stats.grants[type] ?? 0) + 1;
});
provider.on('authorization.success', () => { stats.authorizations += 1; });
provider.on('access_token.destroyed', () => { stats.revocations += 1; });
provider.on('refresh_token.destroyed', () => { stats.revocations += 1; });
provider.on('grant.revoked', () => { stats.grantsRevoked += 1; });
for (const ev of ['grant.error', 'authorization.error', 'revocation.error', 'server_error']) {
  provider.on(ev, (ctx, err) => {
    stats.errors.push(`${ev}: ${err?.error ?? ''} ${err?.error_description ?? err?.message ?? ''}`);
    console.error(`[as] ${ev}: ${err?.error ?? ''} ${err?.error_description ?? err?.message ?? ''}`);
  });
}

provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/__interop/stats') {
    ctx.body = stats;
    return;
  }
  // A3 grants the resource's scope when none is asked for; oidc-provider would deny ("no scope").
  if (ctx.method === 'GET' && ctx.path === '/auth' && !ctx.query.scope) {
    ctx.query = { ...ctx.query, scope: 'mcp:call' };
  }
  await next();
});

provider.listen(PORT, '127.0.0.1', () => {
  console.log(`AS ready ${ISSUER} (client ${CLIENT_ID}, redirect ${PROXY_REDIRECT}, resource ${RESOURCE})`);
});
