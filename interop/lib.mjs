// Shared helpers of the interop hosts: a small cookie-keeping "browser" on fetch, PKCE, the
// headless walk through our consent page and the upstream (oidc-provider) login, assertions.
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import assert from 'node:assert/strict';
import { Agent, setGlobalDispatcher } from 'undici';

export { assert };

// Each host connects from its own loopback address (INTEROP_SOURCE_IP, e.g. 127.0.0.3), as
// separate machines would: the bridge rate-limits registrations per client address.
if (process.env.INTEROP_SOURCE_IP) {
  setGlobalDispatcher(new Agent({ localAddress: process.env.INTEROP_SOURCE_IP }));
}

export const env = {
  server: process.env.INTEROP_SERVER ?? 'http://127.0.0.1:8000', // our issuer (PUBLIC_URL)
  mcp: process.env.INTEROP_MCP_URL ?? 'http://127.0.0.1:8000/mcp',
  as: process.env.INTEROP_AS ?? 'http://127.0.0.1:9000',
  artifacts: process.env.INTEROP_ARTIFACTS ?? new URL('./artifacts/', import.meta.url).pathname,
};

export const USERS = {
  john: 'johndoe@test.com', // operation=addition
  jane: 'janedoe@test.com', // operation=addition, operation=multiplication
  short: 'shortlived@test.com', // both contexts; upstream access tokens live AS_SHORT_TTL seconds
};

export const b64url = (buf) => Buffer.from(buf).toString('base64url');
export const randomToken = (n = 32) => b64url(randomBytes(n));
export const s256 = (verifier) => b64url(createHash('sha256').update(verifier).digest());

/** A cookie jar shared by every port of 127.0.0.1, as in a browser (cookies ignore ports). */
export class Browser {
  constructor() {
    this.cookies = new Map(); // `${name}\0${path}` -> { name, value, path }
    this.trace = [];
  }

  cookieHeader(url) {
    const path = new URL(url).pathname;
    return [...this.cookies.values()]
      .filter((c) => path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  store(url, response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = '/';
      let gone = false;
      for (const a of attrs) {
        const [k, v] = a.split('=');
        if (k.toLowerCase() === 'path') path = v;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) gone = true;
        if (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now()) gone = true;
      }
      const key = `${name}\0${path}`;
      if (gone) this.cookies.delete(key);
      else this.cookies.set(key, { name, value, path });
    }
  }

  /** One request, redirects not followed, cookies sent and kept. */
  async request(url, { method = 'GET', form, headers = {} } = {}) {
    const h = { ...headers };
    const cookie = this.cookieHeader(url);
    if (cookie) h.cookie = cookie;
    let body;
    if (form) {
      h['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(form).toString();
    }
    const r = await fetch(url, { method, headers: h, body, redirect: 'manual' });
    this.store(url, r);
    this.trace.push(`${method} ${url.split('?')[0]} -> ${r.status}`);
    return r;
  }
}

const unescapeHtml = (s) =>
  s.replaceAll('&quot;', '"').replaceAll('&#x27;', "'").replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&amp;', '&');

export function hiddenFields(html) {
  const out = [];
  for (const m of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)"/g)) {
    out.push([m[1], unescapeHtml(m[2])]);
  }
  return out;
}

export function formAction(html, base) {
  const m = html.match(/<form[^>]*action="([^"]*)"/);
  assert.ok(m, 'a form on the page');
  return new URL(unescapeHtml(m[1]), base).toString();
}

/**
 * The user's part of an authorization, headless: our consent page (Approve), then oidc-provider's
 * login (any password) and consent pages, back through our /auth/callback, whose page names the
 * signed-in account (Allow), to the host's redirect URI. Returns that final URL (with code, state,
 * iss). `decision` 'deny' stops at our consent page.
 */
export async function authorizeHeadless(authUrl, user, { browser = new Browser(), decision = 'approve' } = {}) {
  const server = new URL(authUrl).origin;
  let r = await browser.request(authUrl);
  assert.equal(r.status, 200, `our consent page for ${authUrl}`);
  const consent = await r.text();
  assert.match(consent, /Approve/);
  const fields = hiddenFields(consent);
  r = await browser.request(`${server}/authorize`, {
    method: 'POST',
    form: [...fields, ['decision', decision]],
    headers: { origin: server, 'sec-fetch-site': 'same-origin' },
  });
  assert.ok([302, 303].includes(r.status), `consent decision answered ${r.status}`);
  let next = new URL(r.headers.get('location'), server).toString();
  const as = new URL(env.as).origin;
  for (let hops = 0; hops < 20; hops += 1) {
    const origin = new URL(next).origin;
    if (origin !== as && !next.startsWith(`${server}/auth/callback`)) return next; // the host's redirect
    r = await browser.request(next);
    if (r.status >= 300 && r.status < 400) {
      next = new URL(r.headers.get('location'), next).toString();
      continue;
    }
    const html = await r.text();
    assert.equal(r.status, 200, `${next} answered ${r.status}: ${html.slice(0, 500)}`);
    const action = formAction(html, next);
    let form;
    if (html.includes('name="login"')) form = { prompt: 'login', login: user, password: 'any' };
    else if (html.includes('value="consent"')) form = { prompt: 'consent' };
    else if (html.includes('name="confirmation"')) {
      // Ours, after the upstream sign-in (plain http): the account, confirmed.
      assert.ok(html.includes(user), `our confirmation names ${user}`);
      form = { ...Object.fromEntries(hiddenFields(html)), decision: 'allow' };
    } else throw new Error(`unexpected page at ${next}: ${html.slice(0, 300)}`);
    // The page's own form: a browser sends the page's origin.
    const fetchSite = origin === new URL(action).origin ? 'same-origin' : 'cross-site';
    r = await browser.request(action, { method: 'POST', form, headers: { origin, 'sec-fetch-site': fetchSite } });
    assert.ok(r.status >= 300 && r.status < 400, `${action} answered ${r.status}`);
    next = new URL(r.headers.get('location'), action).toString();
  }
  throw new Error(`too many redirects: ${browser.trace.join('\n')}`);
}

/** A listener on a random loopback port (never 33418): the host's redirect target. */
export async function loopbackListener(handler = (req, res) => { res.end('ok'); }) {
  for (;;) {
    const server = createServer(handler);
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address();
    if (port !== 33418) return { server, port, close: () => new Promise((r) => { server.close(r); server.closeAllConnections(); }) };
    server.close();
  }
}

export async function json(r) {
  const text = await r.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`not JSON (${r.status}): ${text.slice(0, 300)}`);
  }
}

export async function asStats() {
  return json(await fetch(`${env.as}/__interop/stats`));
}

/** Our /token. */
export async function token(params) {
  return fetch(`${env.server}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
}

/** Raw JSON-RPC over Streamable HTTP (stateful): initialize, then one request. */
export async function rawMcp(accessToken, method, params = {}, extraHeaders = {}) {
  const headers = {
    authorization: `Bearer ${accessToken}`,
    accept: 'application/json, text/event-stream',
    'content-type': 'application/json',
  };
  const init = await fetch(env.mcp, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'interop-raw', version: '1' } } }),
  });
  if (init.status !== 200) return { status: init.status, headers: init.headers };
  await init.text();
  const session = init.headers.get('mcp-session-id');
  const h = { ...headers, 'mcp-protocol-version': '2025-06-18', ...(session ? { 'mcp-session-id': session } : {}) };
  await fetch(env.mcp, { method: 'POST', headers: h, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  const r = await fetch(env.mcp, { method: 'POST', headers: { ...h, ...extraHeaders }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method, params }) });
  const text = await r.text();
  const data = text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean);
  const msg = data.length ? JSON.parse(data[data.length - 1]) : (text ? JSON.parse(text) : null);
  return { status: r.status, headers: r.headers, msg };
}

/** Runs named checks; prints one line each; exit code 1 if any failed. */
export async function runChecks(suite, checks) {
  let failed = 0;
  for (const [name, fn] of checks) {
    const t0 = Date.now();
    try {
      await fn();
      console.log(`  ok   ${suite}: ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`  FAIL ${suite}: ${name}\n${String(e?.stack ?? e).split('\n').map((l) => `       ${l}`).join('\n')}`);
    }
  }
  process.exitCode = failed ? 1 : 0;
  return failed;
}
