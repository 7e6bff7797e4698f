// Host: the MCP TypeScript SDK identifying by its Client ID Metadata Document (the provider's
// `clientMetadataUrl`), which the SDK uses instead of registering because our metadata says
// `client_id_metadata_document_supported: true` and lists `none`. The document is served on
// loopback https (interop/cimd-docs.mjs); the user's part is headless as for the other hosts.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { assert, authorizeHeadless, env, json, randomToken, runChecks, USERS } from '../lib.mjs';

const documentUrl = `${process.env.INTEROP_CIMD_BASE}/ts-sdk/client.json`;

class CimdProvider {
  constructor(user) {
    this.user = user;
    this.redirect = `http://127.0.0.1:${20000 + Math.floor(Math.random() * 20000)}/callback`;
    this.client = undefined;
    this.savedTokens = undefined;
    this.authUrls = [];
  }
  get redirectUrl() { return this.redirect; }
  get clientMetadataUrl() { return documentUrl; }
  get clientMetadata() {
    return { client_name: 'unused: the document names the client', redirect_uris: [this.redirect] };
  }
  state() { this.lastState = randomToken(); return this.lastState; }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.savedTokens; }
  saveTokens(t) { this.savedTokens = t; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    this.authUrls.push(url);
    const back = new URL(await authorizeHeadless(url.toString(), this.user));
    assert.equal(`${back.origin}${back.pathname}`, this.redirect, 'back at the host redirect URI');
    assert.equal(back.searchParams.get('state'), this.lastState);
    assert.equal(back.searchParams.get('iss'), env.server);
    this.code = back.searchParams.get('code');
  }
}

async function connect(provider) {
  const first = new StreamableHTTPClientTransport(new URL(env.mcp), { authProvider: provider });
  try {
    await new Client({ name: 'interop-ts-sdk-cimd', version: '1.0.0' }).connect(first);
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  await first.finishAuth(provider.code);
  const client = new Client({ name: 'interop-ts-sdk-cimd', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(env.mcp), { authProvider: provider }));
  return client;
}

const names = async (client) => (await client.listTools()).tools.map((t) => t.name).sort();
const text = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('');

await runChecks('ts-sdk-cimd', [
  ['john and jane identify by the document URL (no registration); tools per user; refresh', async () => {
    const metadata = await json(await fetch(`${env.server}/.well-known/oauth-authorization-server`));
    assert.equal(metadata.client_id_metadata_document_supported, true);
    for (const [user, tools] of [[USERS.john, ['add', 'whoami']], [USERS.jane, ['add', 'multiply', 'whoami']]]) {
      const provider = new CimdProvider(user);
      const client = await connect(provider);
      assert.equal(provider.client.client_id, documentUrl, 'the SDK used its URL, not /register');
      assert.equal(provider.authUrls[0].searchParams.get('client_id'), documentUrl);
      assert.deepEqual(await names(client), tools);
      const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
      assert.equal(who.subject, user);
      assert.equal(who.client_id, documentUrl);
      await client.close();
      const old = provider.savedTokens;
      assert.equal(await auth(provider, { serverUrl: env.mcp }), 'AUTHORIZED', 'refresh');
      assert.notEqual(provider.savedTokens.refresh_token, old.refresh_token, 'rotated');
    }
    const stats = await json(await fetch(`${process.env.INTEROP_CIMD_BASE}/__stats`));
    assert.equal(stats.fetches['/ts-sdk/client.json'], 1, 'fetched once, then from the cache');
  }],
  ['a document URL the server may not fetch is an error page, never a redirect', async () => {
    const url = new URL(`${env.server}/authorize`);
    for (const [k, v] of Object.entries({
      response_type: 'code', client_id: 'https://169.254.169.254/latest/meta-data/client.json',
      redirect_uri: 'http://127.0.0.1:9/callback', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256',
    })) url.searchParams.set(k, v);
    const r = await fetch(url, { redirect: 'manual' });
    assert.equal(r.status, 400);
    assert.equal(r.headers.get('location'), null);
    assert.match(await r.text(), /not a public internet address/);
  }],
]);
