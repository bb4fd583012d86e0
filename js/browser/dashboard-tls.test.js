// The dashboard served over https by a node that speaks only TLS: its light peer opens
// wss:// to the same node. Headless Chromium trusts exactly the node's test certificate
// (made here with the openssl command), pinned by its public key hash.
//
// Run: node --test js/browser/ (after building target/debug/dhrt).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startNode } from '../test/cluster.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let hasOpenssl = true;
try {
  execFileSync('openssl', ['version'], { stdio: 'ignore' });
} catch {
  hasOpenssl = false;
}

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

/** A test CA and a node certificate for 127.0.0.1 in `dir`; the base64 SHA-256 of the
 * node's public key (what Chromium's SPKI allow-list takes). */
function makeCerts(dir) {
  const ssl = (args, input) =>
    execFileSync('openssl', args, { cwd: dir, input, timeout: 60_000, stdio: ['pipe', 'pipe', 'ignore'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl(['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=dhrt test CA', '-keyout', 'ca.key', '-out', 'ca.pem']);
  writeFileSync(join(dir, 'node.ext'), 'subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth, clientAuth\n');
  ssl(['req', ...ec, '-subj', '/CN=dhrt test node', '-keyout', 'node.key', '-out', 'node.csr']);
  ssl(['x509', '-req', '-in', 'node.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '1', '-extfile', 'node.ext', '-out', 'node.pem']);
  const pub = ssl(['x509', '-in', 'node.pem', '-pubkey', '-noout']);
  const der = ssl(['pkey', '-pubin', '-outform', 'der'], pub);
  return ssl(['dgst', '-sha256', '-binary'], der).toString('base64');
}

test('the dashboard over https connects its light peer with wss://', { skip: !hasOpenssl && 'needs openssl' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dhrt-tls-browser-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const spki = makeCerts(dir);
  const node = await startNode(['--tls-cert', join(dir, 'node.pem'), '--tls-key', join(dir, 'node.key')]);
  cleanup.push(() => node.kill());
  const context = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
    timeout: 60_000,
  });
  cleanup.push(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.goto(`https://${node.addr}/dashboard`);
  await page.waitForFunction(() => document.getElementById('conn')?.dataset.state === 'live');
  await page.waitForFunction(() => document.querySelectorAll('#nodes tr[data-status="alive"]').length === 1);
  assert.ok(sockets.length > 0 && sockets.every((u) => u.startsWith('wss://')), sockets.join(', '));
});
