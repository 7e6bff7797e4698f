// A hostile web page on another loopback port, in a real browser (Debian's Chromium driven by
// playwright-core): what any page the user opens could do to our /register. A simple cross-site
// POST (text/plain, no preflight) must register nothing; after a CORS preflight the page may
// register, but only within its own origin's share; and a host that sends no Origin (VS Code) on
// the same address must still register afterwards. No INTEROP_SOURCE_IP here: the page (through
// Chromium) and the host (node) both come from 127.0.0.1, as on one machine.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { assert, env, json, loopbackListener, runChecks } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const metadata = JSON.stringify({
  client_name: 'Totally VS Code', redirect_uris: ['http://127.0.0.1/cb'],
  token_endpoint_auth_method: 'none', grant_types: ['authorization_code'],
});

const hostile = await loopbackListener((req, res) => {
  res.setHeader('content-type', 'text/html');
  res.end('<!doctype html><title>cute cats</title><p>nothing to see here</p>');
});
const profile = mkdtempSync(join(tmpdir(), 'interop-hostile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM, headless: true, args: FLAGS,
});
const page = await context.newPage();
await page.goto(`http://127.0.0.1:${hostile.port}/`);

/** fetch() from inside the hostile page; the status and body it can read. */
const fromPage = (contentType) => page.evaluate(async ([url, type, body]) => {
  try {
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': type }, body });
    return { status: r.status, body: await r.text() };
  } catch (e) {
    return { status: 0, body: String(e) };
  }
}, [`${env.server}/register`, contentType, metadata]);

try {
  await runChecks('hostile page', [
    ['a cross-site text/plain POST (no preflight) registers nothing: 415', async () => {
      const r = await fromPage('text/plain');
      assert.equal(r.status, 415, r.body);
      assert.equal(JSON.parse(r.body).error, 'invalid_client_metadata');
    }],
    ["after a preflight the page registers only within its own origin's share, then 429", async () => {
      let created = 0;
      let last;
      do {
        last = await fromPage('application/json');
        if (last.status === 201) created += 1;
      } while (last.status === 201 && created < 200);
      assert.ok(created > 0 && created < 200, `the page registered ${created}`);
      assert.equal(last.status, 429, last.body);
      console.log(`       the page registered ${created}, then got ${last.status}`);
    }],
    ['a host without Origin (VS Code) on the same address still registers', async () => {
      const r = await fetch(`${env.server}/register`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: metadata,
      });
      assert.equal(r.status, 201);
      assert.ok((await json(r)).client_id);
    }],
  ]);
} finally {
  await context.close();
  await hostile.close();
  rmSync(profile, { recursive: true, force: true });
}
