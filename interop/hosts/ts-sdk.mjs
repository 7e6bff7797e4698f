// Host: the official MCP TypeScript SDK (Client + StreamableHTTPClientTransport + an
// OAuthClientProvider). The SDK does discovery (RFC 9728, RFC 8414), dynamic registration, PKCE,
// the code exchange and refresh itself; redirectToAuthorization hands the URL to the headless
// user (our consent page, oidc-provider's login and consent), as a desktop host opens a browser.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import {
  assert, asStats, authorizeHeadless, env, rawMcp, randomToken, runChecks, token, USERS,
} from '../lib.mjs';

class HeadlessProvider {
  constructor(user) {
    this.user = user;
    this.redirect = `http://127.0.0.1:${20000 + Math.floor(Math.random() * 20000)}/callback`;
    this.client = undefined;
    this.savedTokens = undefined;
    this.verifier = undefined;
    this.code = undefined;
    this.authUrls = [];
  }
  get redirectUrl() { return this.redirect; }
  get clientMetadata() {
    return {
      client_name: 'interop: MCP TypeScript SDK host',
      redirect_uris: [this.redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() { this.lastState = randomToken(); return this.lastState; }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.savedTokens; }
  saveTokens(t) { this.savedTokens = t; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'tokens') this.savedTokens = undefined;
    if (scope === 'all' || scope === 'client') this.client = undefined;
  }
  async redirectToAuthorization(url) {
    this.authUrls.push(url);
    const back = new URL(await authorizeHeadless(url.toString(), this.user));
    assert.equal(`${back.origin}${back.pathname}`, this.redirect, 'back at the host redirect URI');
    assert.equal(back.searchParams.get('state'), this.lastState, 'state round-trips');
    assert.equal(back.searchParams.get('iss'), env.server, 'RFC 9207 iss is our issuer');
    this.code = back.searchParams.get('code');
    assert.ok(this.code, 'a code');
  }
}

/** Connects like a host: first attempt gets 401 and runs the OAuth flow, then connects again. */
async function connect(provider) {
  const first = new StreamableHTTPClientTransport(new URL(env.mcp), { authProvider: provider });
  const client = new Client({ name: 'interop-ts-sdk', version: '1.0.0' });
  try {
    await client.connect(first);
    return client; // already authorized
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  await first.finishAuth(provider.code);
  const transport = new StreamableHTTPClientTransport(new URL(env.mcp), { authProvider: provider });
  const again = new Client({ name: 'interop-ts-sdk', version: '1.0.0' });
  await again.connect(transport);
  return again;
}

const names = async (client) => (await client.listTools()).tools.map((t) => t.name).sort();
const text = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
const prompts = async (client) => (await client.listPrompts()).prompts.map((p) => p.name).sort();
const resources = async (client) => (await client.listResources()).resources.map((r) => r.uri).sort();
const templates = async (client) => (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
const read = async (client, uri) => (await client.readResource({ uri })).contents.map((c) => c.text).join('');

/** The error a request gets, or null if it succeeded. */
async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return e;
  }
}

async function callError(client, name, args) {
  try {
    const r = await client.callTool({ name, arguments: args });
    return r.isError ? { message: text(r), result: r } : null;
  } catch (e) {
    return e;
  }
}

let jane; // shared by the step-up check

await runChecks('ts-sdk', [
  ['john (operation=addition): DCR, consent, upstream login, tools/list, tools/call', async () => {
    const provider = new HeadlessProvider(USERS.john);
    const client = await connect(provider);
    assert.ok(provider.client?.client_id, 'registered dynamically');
    assert.equal(provider.authUrls.length, 1);
    assert.equal(new URL(provider.authUrls[0]).origin, env.server, 'authorization at our server, not at A3');
    assert.equal(provider.authUrls[0].searchParams.get('resource'), env.mcp, 'resource indicator sent');
    assert.deepEqual(await names(client), ['add', 'whoami']);
    assert.equal(text(await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })), '5');
    const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
    assert.equal(who.subject, USERS.john);
    assert.deepEqual(who.contexts, ['operation=addition']);
    const hidden = await callError(client, 'multiply', { a: 2, b: 3 });
    assert.ok(hidden, 'multiply is refused');
    assert.match(String(hidden.message), /tool not found/i);
    await client.close();
  }],
  ['john (operation=addition): prompts, resources and template instances of his context only', async () => {
    const client = await connect(new HeadlessProvider(USERS.john));
    assert.deepEqual(await prompts(client), ['addition_drill']);
    assert.deepEqual(await resources(client), ['calc://constants', 'calc://tables/addition']);
    assert.deepEqual(await templates(client), ['calc://tables/{operation}']);
    assert.match(await read(client, 'calc://constants'), /pi = 3\.14159/);
    assert.match(await read(client, 'calc://tables/addition'), /2 \+ 3 = 5/);
    const hidden = await failure(read(client, 'calc://tables/multiplication'));
    assert.equal(hidden?.code, -32002, 'the multiplication table is "resource not found"');
    assert.deepEqual(hidden.data, { uri: 'calc://tables/multiplication' });
    const unknown = await failure(read(client, 'calc://tables/division'));
    assert.equal(unknown?.code, hidden.code);
    assert.equal(unknown.message, hidden.message);
    assert.deepEqual(unknown.data, { uri: 'calc://tables/division' });
    const drill = await client.getPrompt({ name: 'addition_drill' });
    assert.match(drill.messages[0].content.text, /`add`/);
    const hiddenPrompt = await failure(client.getPrompt({ name: 'multiplication_drill' }));
    assert.match(String(hiddenPrompt?.message), /prompt 'multiplication_drill' not found/);
    const completion = await client.complete({
      ref: { type: 'ref/resource', uri: 'calc://tables/{operation}' },
      argument: { name: 'operation', value: '' },
    });
    assert.deepEqual(completion.completion.values, ['addition']);
    await client.close();
  }],
  ['jane (both contexts): sees multiply, both drills and both tables; multiply needs mcp:admin; step-up', async () => {
    jane = new HeadlessProvider(USERS.jane);
    let client = await connect(jane);
    assert.deepEqual(await names(client), ['add', 'multiply', 'whoami']);
    assert.deepEqual(await prompts(client), ['addition_drill', 'multiplication_drill']);
    assert.deepEqual(
      await resources(client),
      ['calc://constants', 'calc://tables/addition', 'calc://tables/multiplication'],
    );
    assert.match(await read(client, 'calc://tables/multiplication'), /6 × 7 = 42/);
    assert.match(await read(client, 'calc://tables/addition'), /2 \+ 3 = 5/);
    assert.equal(jane.savedTokens.scope, 'mcp:call');
    const refused = await callError(client, 'multiply', { a: 6, b: 7 });
    assert.ok(refused, 'multiply without mcp:admin is refused');
    assert.match(`${refused.message} ${JSON.stringify(refused.data ?? '')}`, /insufficient_scope/);
    // A 2026-07-28 client names the tool in headers and gets the HTTP challenge instead.
    const raw = await rawMcp(jane.savedTokens.access_token, 'tools/call', { name: 'multiply', arguments: { a: 6, b: 7 } },
      { 'mcp-method': 'tools/call', 'mcp-name': 'multiply' });
    assert.equal(raw.status, 403);
    const challenge = raw.headers.get('www-authenticate');
    assert.match(challenge, /error="insufficient_scope"/);
    assert.match(challenge, /scope="[^"]*mcp:admin/);
    await client.close();
    // Step up: authorize again with the scope the challenge named.
    jane.invalidateCredentials('tokens');
    assert.equal(await auth(jane, { serverUrl: env.mcp, scope: 'mcp:call mcp:admin' }), 'REDIRECT');
    assert.equal(jane.authUrls.at(-1).searchParams.get('scope'), 'mcp:call mcp:admin');
    assert.equal(await auth(jane, { serverUrl: env.mcp, authorizationCode: jane.code }), 'AUTHORIZED');
    assert.deepEqual(jane.savedTokens.scope.split(' ').sort(), ['mcp:admin', 'mcp:call']);
    client = await connect(jane);
    assert.equal(text(await client.callTool({ name: 'multiply', arguments: { a: 6, b: 7 } })), '42');
    await client.close();
  }],
  ['refresh: upstream access token expired (AS_SHORT_TTL), then the host refreshes ours', async () => {
    const provider = new HeadlessProvider(USERS.short);
    let client = await connect(provider);
    assert.deepEqual(await names(client), ['add', 'multiply', 'whoami']);
    const before = (await asStats()).grants.refresh_token ?? 0;
    await new Promise((r) => setTimeout(r, 6500)); // past the upstream token's 5 s lifetime
    const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
    assert.equal(who.subject, USERS.short);
    const after = (await asStats()).grants.refresh_token ?? 0;
    assert.ok(after > before, `the bridge refreshed at oidc-provider (${before} -> ${after})`);
    await client.close();
    // The host's own refresh: auth() with a refresh token posts grant_type=refresh_token to us.
    const old = provider.savedTokens;
    assert.ok(old.refresh_token, 'a refresh token was issued');
    assert.equal(await auth(provider, { serverUrl: env.mcp }), 'AUTHORIZED');
    assert.notEqual(provider.savedTokens.access_token, old.access_token, 'new access token');
    assert.notEqual(provider.savedTokens.refresh_token, old.refresh_token, 'refresh token rotated');
    client = await connect(provider);
    assert.equal(text(await client.callTool({ name: 'add', arguments: { a: 1, b: 1 } })), '2');
    await client.close();
  }],
  ['revocation: RFC 7009 at our /revoke ends the grant here and at oidc-provider', async () => {
    const provider = new HeadlessProvider(USERS.john);
    const client = await connect(provider);
    await client.close();
    const { access_token: at, refresh_token: rt } = provider.savedTokens;
    assert.equal((await rawMcp(at, 'tools/list')).status, 200);
    const before = await asStats();
    const r = await fetch(`${env.server}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: rt, token_type_hint: 'refresh_token', client_id: provider.client.client_id }),
    });
    assert.equal(r.status, 200);
    assert.equal((await rawMcp(at, 'tools/list')).status, 401, 'the access token is dead too');
    const refresh = await token({ grant_type: 'refresh_token', refresh_token: rt, client_id: provider.client.client_id });
    assert.equal(refresh.status, 400);
    assert.equal((await refresh.json()).error, 'invalid_grant');
    let after;
    for (let i = 0; i < 30; i += 1) { // upstream revocation runs in the background
      after = await asStats();
      if (after.grantsRevoked > before.grantsRevoked) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(after.grantsRevoked > before.grantsRevoked, 'oidc-provider revoked the grant');
  }],
]);
