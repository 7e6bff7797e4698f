// A strict reading of our authorization server (the DCR bridge) and protected-resource metadata:
// MCP authorization (2025-11-25) §Authorization Server Metadata Discovery and §Authorization Code
// Protection; RFC 8414 §3.3 (issuer identical), RFC 9207 (iss), RFC 9728, RFC 6749 §5.1 (no-store),
// RFC 7591 §3.2.2.
import {
  assert, authorizeHeadless, env, json, randomToken, runChecks, s256, token, USERS,
} from '../lib.mjs';

const server = env.server;

async function register(body, headers = { 'content-type': 'application/json' }) {
  return fetch(`${server}/register`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

function noStore(r, what) {
  const cc = r.headers.get('cache-control') ?? '';
  assert.match(cc, /\bno-store\b/, `${what}: Cache-Control no-store (got "${cc}")`);
}

async function assertRfc7591Error(r, code, what) {
  assert.equal(r.status, 400, `${what}: 400`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/, `${what}: JSON`);
  const body = await json(r);
  assert.equal(body.error, code, `${what}: error ${JSON.stringify(body)}`);
  assert.equal(typeof body.error, 'string');
  if ('error_description' in body) assert.equal(typeof body.error_description, 'string');
  for (const k of Object.keys(body)) assert.ok(['error', 'error_description'].includes(k), `${what}: unexpected member ${k}`);
}

const validClient = (redirect) => ({
  client_name: 'interop strict reader',
  redirect_uris: [redirect],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
});

await runChecks('metadata', [
  ['RFC 8414: metadata at the path-less well-known URL; issuer identical to the URL it came from', async () => {
    const r = await fetch(`${server}/.well-known/oauth-authorization-server`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    const m = await json(r);
    assert.equal(m.issuer, server, 'issuer === the issuer the well-known URL was built from (plain string compare)');
    const u = new URL(m.issuer);
    assert.equal(u.protocol, 'http:'); // loopback in this suite; https elsewhere
    assert.equal(u.search, '');
    assert.equal(u.hash, '');
    for (const k of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'revocation_endpoint']) {
      assert.equal(typeof m[k], 'string', `${k} present`);
      assert.ok(m[k].startsWith(`${server}/`), `${k} under the issuer`);
    }
    assert.ok(m.response_types_supported.includes('code'), 'response_types_supported has code (REQUIRED)');
    assert.ok(m.grant_types_supported.includes('authorization_code'));
    assert.ok(m.grant_types_supported.includes('refresh_token'));
    assert.ok(m.token_endpoint_auth_methods_supported.includes('none'), 'public clients (VS Code)');
    assert.ok(m.scopes_supported.includes('mcp:call'));
  }],
  ['A3: the discovery order of a path-less issuer finds it first; PRM names it', async () => {
    // RFC 9728: the PRM at the path-inserted URL; resource identical to the MCP URL.
    const r = await fetch(`${server}/.well-known/oauth-protected-resource${new URL(env.mcp).pathname}`);
    assert.equal(r.status, 200);
    const prm = await json(r);
    assert.equal(prm.resource, env.mcp, 'PRM resource === the MCP server URL');
    assert.deepEqual(prm.authorization_servers, [server]);
    // The 401 names the PRM.
    const unauth = await fetch(env.mcp, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    assert.equal(unauth.status, 401);
    assert.match(unauth.headers.get('www-authenticate'), /^Bearer .*resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/);
  }],
  ['MCP authorization, Authorization Code Protection: code_challenge_methods_supported is present and S256; plain and missing PKCE refused (error page, no redirect before consent)', async () => {
    const m = await json(await fetch(`${server}/.well-known/oauth-authorization-server`));
    assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
    const c = await json(await register(validClient('http://127.0.0.1:40001/cb')));
    for (const extra of [{ code_challenge: randomToken(), code_challenge_method: 'plain' }, {}]) {
      const q = new URLSearchParams({ response_type: 'code', client_id: c.client_id, redirect_uri: 'http://127.0.0.1:40001/cb', state: 'x', ...extra });
      const r = await fetch(`${server}/authorize?${q}`, { redirect: 'manual' });
      // Refused on our own error page: before consent nothing is redirected, not even errors to a
      // registered URI (anyone can register one, which would make us an open redirector).
      assert.equal(r.status, 400, 'refused with an error page');
      assert.equal(r.headers.get('location'), null, 'no redirect before consent');
      const page = await r.text();
      assert.match(page, /invalid_request/, 'the page names the OAuth error');
      assert.match(page, /code_challenge/, 'and says what is wrong');
    }
  }],
  ['RFC 9207: authorization_response_iss_parameter_supported, and iss on the response equals the issuer', async () => {
    const m = await json(await fetch(`${server}/.well-known/oauth-authorization-server`));
    assert.equal(m.authorization_response_iss_parameter_supported, true);
    const redirect = 'http://127.0.0.1:40002/cb';
    const c = await json(await register(validClient(redirect)));
    const verifier = randomToken(48);
    const q = new URLSearchParams({ response_type: 'code', client_id: c.client_id, redirect_uri: redirect, state: 's1', code_challenge: s256(verifier), code_challenge_method: 'S256', resource: env.mcp });
    const back = new URL(await authorizeHeadless(`${server}/authorize?${q}`, USERS.john));
    assert.equal(back.searchParams.get('iss'), server, 'our iss, never the upstream one');
    assert.notEqual(back.searchParams.get('iss'), env.as);
    assert.equal(back.searchParams.get('state'), 's1');
    // Token responses: Cache-Control no-store (RFC 6749 §5.1), on success and on error.
    const ok = await token({ grant_type: 'authorization_code', code: back.searchParams.get('code'), code_verifier: verifier, redirect_uri: redirect, client_id: c.client_id });
    assert.equal(ok.status, 200);
    noStore(ok, 'token success');
    const t = await json(ok);
    assert.equal(t.token_type.toLowerCase(), 'bearer');
    assert.ok(t.access_token && t.refresh_token && t.expires_in > 0);
    const refreshed = await token({ grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: c.client_id });
    assert.equal(refreshed.status, 200);
    noStore(refreshed, 'refresh success');
    const replay = await token({ grant_type: 'authorization_code', code: back.searchParams.get('code'), code_verifier: verifier, redirect_uri: redirect, client_id: c.client_id });
    assert.equal(replay.status, 400);
    noStore(replay, 'token error');
    assert.equal((await json(replay)).error, 'invalid_grant');
    const unsupported = await token({ grant_type: 'password', username: 'a', password: 'b', client_id: c.client_id });
    assert.equal(unsupported.status, 400);
    noStore(unsupported, 'unsupported grant');
    assert.equal((await json(unsupported)).error, 'unsupported_grant_type');
  }],
  ['RFC 7591: successful registration echoes metadata; errors are 400 JSON with RFC 7591 codes', async () => {
    const ok = await register(validClient('http://127.0.0.1:40003/cb'));
    assert.equal(ok.status, 201);
    noStore(ok, 'registration response');
    const c = await json(ok);
    assert.equal(typeof c.client_id, 'string');
    assert.deepEqual(c.redirect_uris, ['http://127.0.0.1:40003/cb']);
    assert.equal(c.token_endpoint_auth_method, 'none');
    assert.ok(!('client_secret' in c), 'public client: no secret');
    await assertRfc7591Error(await register({ ...validClient('http://127.0.0.1/cb'), redirect_uris: ['http://evil.example/cb'] }), 'invalid_redirect_uri', 'plain-http non-loopback redirect');
    await assertRfc7591Error(await register({ ...validClient('http://127.0.0.1/cb'), redirect_uris: ['https://x.example/cb#frag'] }), 'invalid_redirect_uri', 'redirect with fragment');
    await assertRfc7591Error(await register({ ...validClient('http://127.0.0.1/cb'), redirect_uris: [] }), 'invalid_redirect_uri', 'no redirect URI');
    await assertRfc7591Error(await register({ ...validClient('http://127.0.0.1/cb'), token_endpoint_auth_method: 'private_key_jwt' }), 'invalid_client_metadata', 'unsupported auth method');
    await assertRfc7591Error(await register({ ...validClient('http://127.0.0.1/cb'), grant_types: ['client_credentials'] }), 'invalid_client_metadata', 'unsupported grant');
    await assertRfc7591Error(await register('{"redirect_uris": '), 'invalid_client_metadata', 'malformed JSON');
  }],
]);
