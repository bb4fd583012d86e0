// Tokens from the package: `connect(url, {token})` against a real 3-node cluster started
// with `--admin-token-file` (target/debug/dhrt, in memory, ephemeral ports). The token
// is presented as the first message of every WebSocket, never in a URL.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { WebSocket as WsWebSocket } from 'ws';
import { connect, DhrtError } from '../src/index.js';
import { startCluster, waitFor } from './cluster.js';

const ADMIN = 'admin-token-of-the-package-tests-0123456789';

/** Every URL the package opened a WebSocket to. */
const urls = /** @type {string[]} */ ([]);
// The package takes the platform's WebSocket when there is one: this one records URLs.
globalThis.WebSocket = /** @type {any} */ (
  class Recording extends WsWebSocket {
    /** @param {string | URL} url @param {...any} rest */
    constructor(url, ...rest) {
      urls.push(String(url));
      super(url, ...rest);
    }
  }
);

/** @type {Awaited<ReturnType<typeof startCluster>>} */
let cluster;
let dir = '';
/** Tokens the admin created, by role. */
const tokens = /** @type {Record<string, string>} */ ({});

/**
 * `POST /v1/tokens` as the admin.
 * @param {object} body
 * @returns {Promise<string>} the token
 */
async function createToken(body) {
  const res = await fetch(`http://${cluster.nodes[0].addr}/v1/tokens`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  assert.equal(res.status, 201, JSON.stringify(json));
  return json.token;
}

/**
 * What `p` rejects with.
 * @param {Promise<unknown>} p
 * @returns {Promise<DhrtError>}
 */
async function rejection(p) {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DhrtError, `a DhrtError: ${e}`);
    return e;
  }
  assert.fail('it resolved');
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dhrt-token-'));
  const file = join(dir, 'admin.token');
  writeFileSync(file, `${ADMIN}\n`, { mode: 0o600 });
  cluster = await startCluster(3, { args: ['--admin-token-file', file], token: ADMIN });
  tokens.read = await createToken({ role: 'read', note: 'package tests' });
  tokens.orders = await createToken({ role: 'write', collections: ['orders'] });
});

after(() => {
  cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('with the admin token, every node serves the client', async () => {
  const db = await connect(`ws://${cluster.nodes[0].addr}`, { token: ADMIN });
  try {
    // Keys owned by every node: the client opens a connection to each.
    for (let i = 0; i < 30; i++) await db.set('users', `u${i}`, `v${i}`);
    assert.equal(await db.get('users', 'u7'), 'v7');
    const seen = [];
    const stop = db.watch('users', null, (e) => seen.push(e.key));
    await stop.ready;
    await db.set('users', 'watched', 'yes');
    await waitFor(() => seen.includes('watched'), 10_000, 'the watch event');
    stop();
    for (const node of cluster.nodes) assert.equal((await db.stats(node.addr)).node !== undefined, true);
    const opened = new Set(urls.map((u) => new URL(u).host));
    assert.equal(opened.size, 3, `a connection to every node: ${[...opened]}`);
  } finally {
    db.close();
  }
});

test('a read token reads and watches; its writes are forbidden', async () => {
  const db = await connect(`ws://${cluster.nodes[1].addr}`, { token: tokens.read });
  try {
    assert.equal(await db.get('users', 'u3'), 'v3');
    const err = await rejection(db.set('users', 'u3', 'changed'));
    assert.equal(err.code, 'forbidden', err.message);
    assert.equal(await db.get('users', 'u3', { consistency: 'all' }), 'v3', 'nothing written');
    const stop = db.watch('users', null, () => {});
    await stop.ready;
    stop();
  } finally {
    db.close();
  }
});

test('a token for one collection cannot touch another', async () => {
  const db = await connect(`ws://${cluster.nodes[2].addr}`, { token: tokens.orders });
  try {
    await db.set('orders', 'o1', 'paid');
    assert.equal(await db.get('orders', 'o1'), 'paid');
    const err = await rejection(db.get('users', 'u1'));
    assert.equal(err.code, 'forbidden', err.message);
    assert.match(err.message, /orders/);
  } finally {
    db.close();
  }
});

test('without a token, or with a wrong one, connect is unauthorized', async () => {
  const none = await rejection(connect(`ws://${cluster.nodes[0].addr}`, { timeoutMs: 5000 }));
  assert.equal(none.code, 'unauthorized', none.message);
  assert.match(none.message, /requires a token/);
  const wrong = `${tokens.read.slice(0, -4)}AAAA`;
  const refused = await rejection(connect(`ws://${cluster.nodes[0].addr}`, { token: wrong, timeoutMs: 5000 }));
  assert.equal(refused.code, 'unauthorized', refused.message);
  assert.doesNotMatch(refused.message, /requires a token/, 'says why the token was refused');
  const malformed = await rejection(connect(`ws://${cluster.nodes[0].addr}`, { token: 'nope', timeoutMs: 5000 }));
  assert.equal(malformed.code, 'unauthorized');
  assert.match(malformed.message, /malformed/);
});

test('collection settings need the admin token; a scoped token lists what it covers', async () => {
  const admin = await connect(`ws://${cluster.nodes[0].addr}`, { token: ADMIN });
  const orders = await connect(`ws://${cluster.nodes[1].addr}`, { token: tokens.orders });
  const reader = await connect(`ws://${cluster.nodes[2].addr}`, { token: tokens.read });
  try {
    assert.equal((await admin.createCollection('orders', { maxKeys: 100 })).settings.maxKeys, 100);
    for (const [db, who] of [[orders, 'a write token'], [reader, 'a read token']]) {
      const err = await rejection(db.alterCollection('orders', { maxKeys: null }));
      assert.equal(err.code, 'forbidden', `${who}: ${err.message}`);
      assert.equal((await rejection(db.dropCollection('orders'))).code, 'forbidden', who);
    }
    assert.deepEqual((await orders.collections()).map((c) => c.name), ['orders'], 'only what it covers');
    assert.equal((await orders.collection('orders'))?.settings.maxKeys, 100);
    assert.equal((await rejection(orders.collection('users'))).code, 'forbidden');
    const all = (await reader.collections()).map((c) => c.name);
    assert.ok(all.includes('orders') && all.includes('users'), `${all}`);
  } finally {
    admin.close();
    orders.close();
    reader.close();
  }
});

test('no token appears in any URL the package opened', () => {
  assert.ok(urls.length >= 3, `${urls.length} sockets opened`);
  for (const url of urls) {
    assert.equal(new URL(url).search, '', url);
    for (const t of [ADMIN, tokens.read, tokens.orders]) {
      assert.ok(!url.includes(t) && !url.includes(encodeURIComponent(t)), url);
    }
  }
});
