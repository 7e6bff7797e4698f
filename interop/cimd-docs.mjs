// Client ID Metadata Documents for the interop hosts, served over https on 127.0.0.1 with a
// certificate from a CA made for the run (interop/run makes both with openssl, and gives the CA to
// the example server as SSL_CERT_FILE). The MCP SDKs insist on an https client_id URL with a path;
// the example server runs with CIMD_ALLOW_LOOPBACK=1 so that it may fetch from 127.0.0.1.
// env: DOCS_PORT, DOCS_KEY, DOCS_CERT (PEM files)
import { createServer } from 'node:https';
import { readFileSync } from 'node:fs';

const port = Number(process.env.DOCS_PORT);
const base = `https://127.0.0.1:${port}`;
const documents = {
  '/ts-sdk/client.json': {
    client_name: 'interop: MCP TypeScript SDK host (CIMD)',
    redirect_uris: ['http://127.0.0.1/callback'],
  },
  '/rmcp/client.json': {
    client_name: 'interop: rmcp host (CIMD)',
    redirect_uris: ['http://127.0.0.1/rmcp-callback'],
  },
};
const fetches = {}; // path -> times served

createServer({ key: readFileSync(process.env.DOCS_KEY), cert: readFileSync(process.env.DOCS_CERT) }, (req, res) => {
  const path = new URL(req.url, base).pathname;
  if (path === '/__stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ fetches }));
    return;
  }
  const doc = documents[path];
  if (!doc) {
    res.writeHead(404).end();
    return;
  }
  fetches[path] = (fetches[path] ?? 0) + 1;
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' });
  res.end(JSON.stringify({
    client_id: `${base}${path}`,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    ...doc,
  }));
}).listen(port, '127.0.0.1', () => console.log(`documents on ${base}`));
