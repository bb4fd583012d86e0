// The package against a real 3-node cluster (target/debug/dhrt, in memory, ephemeral
// ports): requests, routing, watches, local copies and a node's death.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, DhrtError } from '../src/index.js';
import { startCluster, waitFor } from './cluster.js';

/** @type {Awaited<ReturnType<typeof startCluster>>} */
let cluster;
/** @type {import('../src/index.js').Client} */
let db;

before(async () => {
  cluster = await startCluster(3);
  db = await connect(`ws://${cluster.nodes[0].addr}`);
});

after(() => {
  db?.close();
  cluster?.stop();
});

test('connect reads the ring and the replication factor', () => {
  const ring = db.ringView();
  assert.equal(ring.members.length, 3);
  assert.equal(ring.replicas, 3);
  const shares = ring.members.reduce((s, m) => s + m.share, 0);
  assert.ok(Math.abs(shares - 1) < 1e-9, `shares sum to 1: ${shares}`);
  assert.ok(ring.members.every((m) => m.status === 'alive' && m.tokens.length === 32));
});

test('set, get, del, getMany with strings and bytes', async () => {
  const ts = await db.set('users', 'ada', 'lovelace');
  assert.equal(typeof ts, 'bigint');
  assert.equal(await db.get('users', 'ada'), 'lovelace');
  assert.deepEqual(await db.get('users', 'ada', { encoding: 'bytes' }), new TextEncoder().encode('lovelace'));
  const bin = new Uint8Array([0, 255, 1]);
  await db.set('bin', bin, bin, { consistency: 'all' });
  assert.deepEqual(await db.get('bin', bin, { encoding: 'bytes' }), bin);
  assert.ok((await db.del('users', 'ada')) > ts, 'a later timestamp');
  assert.equal(await db.get('users', 'ada'), null);
  assert.equal(await db.get('users', 'never-written', { consistency: 'one' }), null);
  await db.set('users', 'alan', 'turing');
  assert.deepEqual(await db.getMany('users', ['alan', 'ada', 'nobody']), ['turing', null, null]);
});

test('a single-key request goes to the key\'s owner', async () => {
  const route = db.route('users', 'grace');
  assert.equal(route.length, 3, 'every serving node, owner first');
  const before = await db.stats(route[0]);
  await db.set('users', 'grace', 'hopper', { consistency: 'one' });
  const after = await db.stats(route[0]);
  assert.equal(after.requests - before.requests, 1, 'the owner received the set');
});

test('batch writes and deletes; scan pages with a cursor', async () => {
  const items = Array.from({ length: 250 }, (_, i) => [`k${String(i).padStart(3, '0')}`, `v${i}`]);
  const res = await db.batch('pages', items);
  assert.equal(res.written, 250);
  assert.equal(typeof res.ts, 'bigint');
  const del = await db.batch('pages', { k000: null, k001: null });
  assert.deepEqual([del.written, del.deleted], [0, 2]);
  const seen = new Map();
  let cursor = null;
  let pages = 0;
  do {
    const page = await db.scan('pages', { cursor, limit: 40 });
    for (const [k, v] of page.items) seen.set(k, v);
    cursor = page.cursor;
    pages++;
  } while (cursor && pages < 100);
  assert.equal(seen.size, 248);
  assert.equal(seen.get('k123'), 'v123');
  assert.ok(pages > 1);
  const prefixed = [];
  for await (const [k] of db.entries('pages', { prefix: 'k24' })) prefixed.push(k);
  assert.deepEqual(prefixed.sort(), ['k240', 'k241', 'k242', 'k243', 'k244', 'k245', 'k246', 'k247', 'k248', 'k249']);
});

test('bad input is refused with a typed error', async () => {
  await assert.rejects(db.set('no spaces allowed', 'k', 'v'), (e) => e instanceof DhrtError && e.code === 'invalid_input');
  await assert.rejects(db.get('users', 'k', { consistency: 'most' }), (e) => e.code === 'invalid_input' && /quorum/.test(e.message));
  assert.throws(() => db.watch('users', null, 'not a function'), TypeError);
  await assert.rejects(db.set('users', 42, 'v'), TypeError);
});

test('a watch sees every change once, live', async () => {
  const events = [];
  const stop = db.watch('watched', 'a', (e) => events.push(e));
  await stop.ready;
  await db.set('watched', 'a1', 'x');
  await db.set('watched', 'b1', 'not matched');
  await db.del('watched', 'a1');
  await waitFor(() => events.length >= 2, 5_000, 'two events');
  assert.deepEqual(events.map((e) => [e.key, e.value, e.deleted]), [['a1', 'x', false], ['a1', null, true]]);
  assert.ok(events[1].ts > events[0].ts);
  stop();
  await db.set('watched', 'a2', 'after');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(events.length, 2, 'no events after unsubscribe');
});

test('a local copy catches up by sync, follows changes and reads offline', async () => {
  const items = Array.from({ length: 500 }, (_, i) => [`r${i}`, `v${i}`]);
  // Written at `all`: every replica holds them before the copy starts, so
  // they reach it by sync. At quorum the third replica may still be applying
  // them, and the copy's watch would deliver them as events instead.
  await db.batch('copied', items, { consistency: 'all' });
  await db.del('copied', 'r7', { consistency: 'all' });
  const copy = await db.replica('copied');
  assert.equal(copy.state, 'synced');
  assert.equal(copy.size, 499);
  assert.equal(copy.get('r3'), 'v3');
  assert.equal(copy.get('r7'), null);
  let scanned = 0;
  for (const _ of copy.entries()) scanned++;
  assert.equal(scanned, 499);
  const info = copy.info();
  assert.ok(info.rounds >= 1 && info.sessions >= 1 && info.entriesSynced >= 500, JSON.stringify(info, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
  const changes = [];
  copy.onChange((e) => changes.push(e.key));
  await db.set('copied', 'fresh', 'new');
  await waitFor(() => copy.get('fresh') === 'new', 5_000, 'the copy to follow a write');
  assert.ok(changes.includes('fresh'));
  copy.close();
  assert.throws(() => copy.info(), /closed/);
});

// Last: it kills a node.
test('reads keep working through another replica when a node dies', async () => {
  for (let i = 0; i < 30; i++) await db.set('survive', `s${i}`, `v${i}`);
  const victim = cluster.nodes[2];
  const owned = Array.from({ length: 30 }, (_, i) => `s${i}`).filter((k) => db.route('survive', k)[0] === victim.addr);
  assert.ok(owned.length > 0, 'the victim owns some keys');
  const events = [];
  const stop = db.watch('survive', null, (e) => events.push(e.key));
  await stop.ready;
  victim.kill();
  for (const k of owned) assert.equal(await db.get('survive', k), `v${k.slice(1)}`, `${k} through another replica`);
  await db.set('survive', 'after-death', 'yes');
  assert.equal(await db.get('survive', 'after-death'), 'yes');
  await waitFor(() => events.includes('after-death'), 10_000, 'the watch to see a write after the death');
  stop();
  await assert.rejects(db.stats(victim.addr), (e) => e.code === 'unavailable');
  const ring = await waitFor(
    async () => {
      const members = await db.ring();
      const m = members.find((x) => x.addr === victim.addr);
      return m && m.status !== 'alive' ? members : null;
    },
    30_000,
    'the ring to mark the dead node',
  );
  assert.ok(ring.some((m) => m.addr === victim.addr && ['suspect', 'dead'].includes(m.status)));
});
