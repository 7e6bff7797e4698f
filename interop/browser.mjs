// The web pages in a real browser: Debian's Chromium driven by playwright-core (never a browser
// playwright downloads). Real clicks and form fills through our consent page, oidc-provider's
// login and consent pages and our confirmation of the signed-in account, ending on the host's
// loopback redirect with a code; screenshots (artifacts/consent.png, artifacts/confirmation.png);
// a check that the consent page cannot be framed; and the cookie-tossing attack of a page on
// another loopback port, played in the browser, stopped at the confirmation.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import {
  assert, Browser, env, hiddenFields, json, loopbackListener, rawMcp, randomToken, runChecks, s256, token, USERS,
} from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

mkdirSync(env.artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'interop-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 900, height: 700 },
});
const version = context.browser()?.version() ?? '(persistent context)';

async function registerClient(redirect, name = 'Interop Browser Host') {
  const r = await fetch(`${env.server}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: name, redirect_uris: [redirect], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none', application_type: 'native',
    }),
  });
  assert.equal(r.status, 201);
  return (await json(r)).client_id;
}

function authorizeUrl(clientId, redirect, verifier, state) {
  const q = new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: redirect, state,
    code_challenge: s256(verifier), code_challenge_method: 'S256', scope: 'mcp:call', resource: env.mcp,
  });
  return `${env.server}/authorize?${q}`;
}

const host = await loopbackListener((req, res) => {
  res.setHeader('content-type', 'text/html');
  res.end('<!doctype html><title>host</title><p id="done">Authorization complete. You can close this window.</p>');
});
const redirect = `http://127.0.0.1:${host.port}/callback`;
const clientId = await registerClient(redirect);

try {
  await runChecks('browser', [
    [`Chromium ${version}: consent page (screenshot), Approve, upstream login + consent, back at the host with a code`, async () => {
      const page = await context.newPage();
      const verifier = randomToken(48);
      const state = randomToken();
      const response = await page.goto(authorizeUrl(clientId, redirect, verifier, state));
      assert.equal(response.status(), 200);
      await page.getByRole('heading', { name: /Authorize Interop Browser Host/ }).waitFor();
      assert.ok(await page.getByText(redirect).isVisible(), 'the redirect URI is shown (MCP authorization, Localhost Redirect URI Risks: the hostname must be displayed)');
      assert.ok(await page.getByText(`127.0.0.1:${host.port}`, { exact: true }).first().isVisible(), 'the redirect host is shown');
      await page.screenshot({ path: join(env.artifacts, 'consent.png'), fullPage: true });

      await page.getByRole('button', { name: 'Approve' }).click();
      await page.waitForURL((u) => u.origin === new URL(env.as).origin && u.pathname.startsWith('/interaction/'));
      await page.locator('input[name="login"]').fill(USERS.jane);
      await page.locator('input[name="password"]').fill('correct horse battery staple');
      await page.screenshot({ path: join(env.artifacts, 'upstream-login.png') });
      await page.getByRole('button', { name: 'Sign-in' }).click();
      await page.getByRole('button', { name: 'Continue' }).waitFor();
      await page.screenshot({ path: join(env.artifacts, 'upstream-consent.png') });
      await page.getByRole('button', { name: 'Continue' }).click();
      // Back at our callback (plain http): the page names the account and where the code goes.
      await page.getByRole('heading', { name: /Give Interop Browser Host access to your account/ }).waitFor();
      assert.ok(await page.getByText(USERS.jane, { exact: true }).isVisible(), 'the signed-in account is named');
      assert.ok(await page.getByText(`127.0.0.1:${host.port}`, { exact: true }).first().isVisible(), 'the redirect host is shown');
      await page.screenshot({ path: join(env.artifacts, 'confirmation.png'), fullPage: true });
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.waitForURL((u) => u.href.startsWith(redirect));
      await page.locator('#done').waitFor();
      const landed = new URL(page.url());
      assert.equal(landed.searchParams.get('state'), state);
      assert.equal(landed.searchParams.get('iss'), env.server);
      const code = landed.searchParams.get('code');
      assert.ok(code);
      await page.screenshot({ path: join(env.artifacts, 'host-redirect.png') });

      const t = await token({ grant_type: 'authorization_code', client_id: clientId, code, code_verifier: verifier, redirect_uri: redirect });
      assert.equal(t.status, 200);
      const tokens = await json(t);
      const who = await rawMcp(tokens.access_token, 'tools/call', { name: 'whoami', arguments: {} });
      assert.equal(JSON.parse(who.msg.result.content[0].text).subject, USERS.jane);
      await page.close();
    }],
    ['Deny in the browser: back at the host with error=access_denied, no code', async () => {
      const page = await context.newPage();
      const state = randomToken();
      await page.goto(authorizeUrl(clientId, redirect, randomToken(48), state));
      await page.getByRole('button', { name: 'Deny' }).click();
      await page.waitForURL((u) => u.href.startsWith(redirect));
      const landed = new URL(page.url());
      assert.equal(landed.searchParams.get('error'), 'access_denied');
      assert.equal(landed.searchParams.get('state'), state);
      assert.equal(landed.searchParams.get('code'), null);
      await page.close();
    }],
    ['the consent page cannot be framed by another origin (a frameable page in the same test can)', async () => {
      const attacker = await loopbackListener((req, res) => {
        res.setHeader('content-type', 'text/html');
        if (req.url.startsWith('/frameable')) { res.end('<p>frameable control</p>'); return; }
        const target = new URL(req.url, 'http://x').searchParams.get('target');
        if (!target) { res.statusCode = 404; res.end(); return; }
        res.end(`<!doctype html><iframe id="victim" src="${target.replaceAll('"', '&quot;')}" width="600" height="400"></iframe>
<iframe id="control" src="/frameable"></iframe>`);
      });
      try {
        const page = await context.newPage();
        const refused = [];
        page.on('console', (m) => { if (/frame|ancestor/i.test(m.text())) refused.push(m.text()); });
        const victim = authorizeUrl(clientId, redirect, randomToken(48), randomToken());
        // localhost:<port> is another origin than our http://127.0.0.1:<port>.
        await page.goto(`http://localhost:${attacker.port}/?target=${encodeURIComponent(victim)}`, { waitUntil: 'domcontentloaded' });
        await page.waitForTimeout(1500);
        const control = page.frames().find((f) => f.url().endsWith('/frameable'));
        assert.ok(control, 'the control frame loaded');
        assert.match(await control.content(), /frameable control/, 'the check sees framed content when allowed');
        const framed = page.frames().find((f) => f !== page.mainFrame() && f !== control);
        let text = '';
        const within = (p, ms) => Promise.race([p, new Promise((r) => setTimeout(() => r(''), ms))]);
        try { text = framed ? await within(framed.evaluate(() => document.body?.innerText ?? ''), 3000) : ''; } catch { text = ''; }
        assert.doesNotMatch(text, /Approve|Authorize/, 'the consent page rendered inside the frame');
        assert.ok(!framed || !framed.url().startsWith(env.server) || text === '', `frame at ${framed?.url()}`);
        assert.ok(refused.some((m) => /frame-ancestors 'none'/.test(m)), `Chromium reports the CSP block: ${refused}`);
        console.log(`       chromium: ${refused[0].slice(0, 160)}`);
        await page.screenshot({ path: join(env.artifacts, 'framing-blocked.png'), timeout: 10000 }).catch(() => {});
        await page.close();
      } finally {
        await attacker.close();
      }
    }],
    ['cookie tossing from another loopback port: Chromium follows the planted binding, oidc-provider signs Jane in silently, our page names her account and the attacker\'s address, a post from his page is refused, Deny sends him access_denied', async () => {
      // The attacker's own site, on another loopback port: where his client's codes would go, and
      // the page that plants his binding cookie in Jane's browser (cookies ignore ports) and
      // sends her to the upstream. (Jane signed in at oidc-provider in the first check.)
      const received = [];
      let plant = null;
      const attacker = await loopbackListener((req, res) => {
        if (req.url.startsWith('/cb')) { received.push(req.url); res.end('attacker'); return; }
        if (req.url === '/' && plant) {
          res.writeHead(303, { 'set-cookie': `${plant.cookie}; Path=/`, location: plant.upstream });
          res.end();
          return;
        }
        res.setHeader('content-type', 'text/html');
        res.end(req.url.startsWith('/post?') ? decodeURIComponent(req.url.slice(6)) : '');
      });
      try {
        const evilRedirect = `http://127.0.0.1:${attacker.port}/cb`;
        const evil = await registerClient(evilRedirect, 'Interop Browser Host');
        // He approves his own consent page in his own browser and keeps what he needs.
        const his = new Browser();
        const authUrl = authorizeUrl(evil, evilRedirect, randomToken(48), randomToken());
        const consent = await (await his.request(authUrl)).text();
        const approved = await his.request(`${env.server}/authorize`, {
          method: 'POST',
          form: [...hiddenFields(consent), ['decision', 'approve']],
          headers: { origin: env.server, 'sec-fetch-site': 'same-origin' },
        });
        assert.equal(approved.status, 303);
        const cookie = approved.headers.getSetCookie().find((c) => c.startsWith('a3mcp_tx_')).split(';')[0];
        plant = { cookie, upstream: approved.headers.get('location') };

        const page = await context.newPage();
        await page.goto(`http://127.0.0.1:${attacker.port}/`);
        await page.getByRole('heading', { name: /access to your account/ }).waitFor();
        assert.ok(page.url().startsWith(`${env.server}/auth/callback`), page.url());
        assert.ok(await page.getByText(USERS.jane, { exact: true }).isVisible(), 'her account is named');
        assert.ok(await page.getByText(`127.0.0.1:${attacker.port}`, { exact: true }).isVisible(), 'and his address');
        await page.screenshot({ path: join(env.artifacts, 'attack-confirmation.png'), fullPage: true });
        assert.deepEqual(received, [], 'no code reached the attacker');

        // Even with the page's secret (which his page cannot read), a post from his origin fails.
        const id = await page.locator('input[name="confirmation"]').getAttribute('value');
        const forged = `<form method="post" action="${env.server}/auth/confirm"><input name="confirmation" value="${id}"><input name="decision" value="allow"></form><script>document.forms[0].submit()</script>`;
        const other = await context.newPage();
        const answer = other.waitForResponse((r) => r.url() === `${env.server}/auth/confirm`);
        await other.goto(`http://127.0.0.1:${attacker.port}/post?${encodeURIComponent(forged)}`);
        assert.equal((await answer).status(), 403, 'Chromium sends his origin (Sec-Fetch-Site: same-site) and we refuse it');
        await other.close();
        assert.deepEqual(received, [], 'no code reached the attacker');

        await page.getByRole('button', { name: 'Deny' }).click();
        await page.waitForURL((u) => u.href.startsWith(evilRedirect));
        const landed = new URL(page.url());
        assert.equal(landed.searchParams.get('error'), 'access_denied');
        assert.equal(landed.searchParams.get('code'), null);
        assert.ok(received.every((u) => !u.includes('code=')), `${received}`);
        await page.close();
      } finally {
        await attacker.close();
      }
    }],
  ]);
} finally {
  await context.close();
  await host.close();
  rmSync(profile, { recursive: true, force: true });
}
