// The package against a node that speaks only TLS (target/debug/dhrt with a test
// certificate the openssl command makes here): wss:// with the CA works, without it
// the node's certificate is not trusted.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect } from '../src/index.js';
import { startNode } from './cluster.js';

let hasOpenssl = true;
try {
  execFileSync('openssl', ['version'], { stdio: 'ignore' });
} catch {
  hasOpenssl = false;
}

/** @type {string} */
let dir;
/** @type {Awaited<ReturnType<typeof startNode>>} */
let node;

/** A test CA and a node certificate for 127.0.0.1, valid for a day, in `dir`. */
function makeCerts() {
  const ssl = (/** @type {string[]} */ args) =>
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore', timeout: 60_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl(['req', '-x509', ...ec, '-days', '1', '-subj', '/CN=dhrt test CA', '-keyout', 'ca.key', '-out', 'ca.pem']);
  writeFileSync(
    join(dir, 'node.ext'),
    'subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth, clientAuth\n',
  );
  ssl(['req', ...ec, '-subj', '/CN=dhrt test node', '-keyout', 'node.key', '-out', 'node.csr']);
  ssl(['x509', '-req', '-in', 'node.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '1', '-extfile', 'node.ext', '-out', 'node.pem']);
}

before(async () => {
  if (!hasOpenssl) return;
  dir = mkdtempSync(join(tmpdir(), 'dhrt-tls-'));
  makeCerts();
  node = await startNode(['--tls-cert', join(dir, 'node.pem'), '--tls-key', join(dir, 'node.key')]);
});

after(() => {
  node?.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('wss:// with the CA reaches a TLS node', { skip: !hasOpenssl && 'needs openssl' }, async () => {
  const ca = readFileSync(join(dir, 'ca.pem'));
  const db = await connect(`wss://${node.addr}`, { ca, timeoutMs: 10_000 });
  try {
    await db.set('t', 'k', 'over tls');
    assert.equal(await db.get('t', 'k'), 'over tls');
  } finally {
    db.close();
  }
  // A CA turns TLS on for a bare host:port.
  const bare = await connect(node.addr, { ca: ca.toString(), timeoutMs: 10_000 });
  try {
    assert.equal(await bare.get('t', 'k'), 'over tls');
  } finally {
    bare.close();
  }
});

test('without the CA, or without TLS, connect fails', { skip: !hasOpenssl && 'needs openssl' }, async () => {
  await assert.rejects(connect(`wss://${node.addr}`, { timeoutMs: 3_000 }));
  await assert.rejects(connect(`ws://${node.addr}`, { timeoutMs: 3_000 }));
});
