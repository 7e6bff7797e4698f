// Host: what VS Code does (its `fetchDynamicRegistration` in src/vs/base/common/oauth.ts) — the exact registration body VS Code sends, then the
// desktop flow with its loopback redirect on a random port (VS Code falls back to one when 33418 is
// busy), PKCE S256 and resource, our consent page, the upstream login, the code landing on a real
// loopback listener, the token, and tools over MCP.
import {
  assert, authorizeHeadless, env, json, loopbackListener, rawMcp, randomToken, runChecks, s256, token, USERS,
} from '../lib.mjs';

const VSCODE_BODY = {
  client_name: 'Visual Studio Code',
  client_uri: 'https://code.visualstudio.com',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: [
    'https://insiders.vscode.dev/redirect',
    'https://vscode.dev/redirect',
    'http://127.0.0.1/',
    'http://127.0.0.1:33418/',
  ],
  scope: 'mcp:call',
  token_endpoint_auth_method: 'none',
  application_type: 'native',
};

let client;

await runChecks('vscode', [
  ['registration with the exact VS Code body is accepted as sent', async () => {
    const m = await json(await fetch(`${env.server}/.well-known/oauth-authorization-server`));
    // VS Code sends grant_types = grant_types_supported ∩ {authorization_code, refresh_token, device_code}.
    const wanted = ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'];
    assert.deepEqual(wanted.filter((g) => m.grant_types_supported.includes(g)), VSCODE_BODY.grant_types);
    const r = await fetch(m.registration_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(VSCODE_BODY),
    });
    assert.equal(r.status, 201, `registration refused: ${r.status}`);
    client = await json(r);
    assert.equal(typeof client.client_id, 'string');
    assert.deepEqual(client.redirect_uris, VSCODE_BODY.redirect_uris, 'every URI kept, none rejected');
    assert.equal(client.token_endpoint_auth_method, 'none');
    assert.equal(client.application_type, 'native');
    assert.equal(client.client_name, 'Visual Studio Code');
  }],
  ['desktop flow on a random loopback port (not 33418): consent, upstream login, code at the listener, token, tools', async () => {
    const landed = [];
    const listener = await loopbackListener((req, res) => {
      landed.push(new URL(req.url, `http://127.0.0.1:${listener.port}`));
      res.end('You can close this window.');
    });
    try {
      assert.notEqual(listener.port, 33418);
      const redirect = `http://127.0.0.1:${listener.port}/`;
      const verifier = randomToken(48);
      const state = randomToken();
      const q = new URLSearchParams({
        client_id: client.client_id,
        response_type: 'code',
        code_challenge: s256(verifier),
        code_challenge_method: 'S256',
        scope: 'mcp:call',
        redirect_uri: redirect,
        state,
        resource: env.mcp,
      });
      const back = await authorizeHeadless(`${env.server}/authorize?${q}`, USERS.jane);
      assert.ok(back.startsWith(redirect), `redirected to ${back}`);
      const r = await fetch(back); // the browser lands on VS Code's listener
      assert.equal(r.status, 200);
      assert.equal(landed.length, 1);
      const got = landed[0].searchParams;
      assert.equal(got.get('state'), state);
      assert.equal(got.get('iss'), env.server);
      const t = await token({
        grant_type: 'authorization_code',
        client_id: client.client_id,
        code: got.get('code'),
        code_verifier: verifier,
        redirect_uri: redirect,
        resource: env.mcp,
      });
      assert.equal(t.status, 200);
      const tokens = await json(t);
      const list = await rawMcp(tokens.access_token, 'tools/list');
      assert.equal(list.status, 200);
      assert.deepEqual(list.msg.result.tools.map((x) => x.name).sort(), ['add', 'multiply', 'whoami']);
      const add = await rawMcp(tokens.access_token, 'tools/call', { name: 'add', arguments: { a: 40, b: 2 } });
      assert.equal(add.msg.result.content[0].text, '42');
      // The redirect URI of the token request must be the one of the authorization (port included).
      const other = await token({
        grant_type: 'authorization_code', client_id: client.client_id, code: got.get('code'),
        code_verifier: verifier, redirect_uri: 'http://127.0.0.1:33418/',
      });
      assert.equal(other.status, 400);
    } finally {
      await listener.close();
    }
  }],
]);
