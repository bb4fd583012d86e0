// Collection settings from the package, against a real 3-node cluster (target/debug/dhrt,
// in memory, ephemeral ports): create, alter (a setting reset with null), show, list and
// drop, a quota refusing a write with `quota_exceeded`, and a layout setting moving a
// collection's data while it serves. With 3 replicas on 3 nodes every node keeps every
// key, so the sizes and quotas are exact.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, DhrtError } from '../src/index.js';
import { startCluster, waitFor } from './cluster.js';

/** Every setting at the cluster's default. */
const DEFAULTS = { consistency: null, ttlMs: null, maxKeys: null, maxBytes: null, replicas: null, select: {}, zoneLabel: null };
/** The cluster's layout: its replication factor, on any node, no zones. */
const CLUSTER_LAYOUT = { replicas: null, select: {}, zoneLabel: null };

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
    return /** @type {DhrtError} */ (e);
  }
  assert.fail('it resolved');
}

test('create, show, alter with a reset, list and drop a collection', async () => {
  const made = await db.createCollection('sessions', { consistency: 'all', ttlMs: 3_600_000, maxKeys: 1000 });
  assert.deepEqual(made, {
    name: 'sessions',
    defined: true,
    placement: 'hashed',
    replicas: 3,
    keys: 0,
    bytes: 0,
    settings: { ...DEFAULTS, consistency: 'all', ttlMs: 3_600_000, maxKeys: 1000 },
    layout: { current: CLUSTER_LAYOUT, moving: null },
  });
  const again = await rejection(db.createCollection('sessions', {}));
  assert.equal(again.code, 'conflict', again.message);
  assert.match(again.message, /has settings already/);

  await db.batch('sessions', [['s1', 'alice'], ['s2', 'bob']], { consistency: 'all' });
  // Any node answers the same: the settings were written at quorum, the keys at `all`.
  const shown = await db.collection('sessions');
  assert.deepEqual(shown?.settings, made.settings);
  assert.equal(shown?.keys, 2);
  assert.ok((shown?.bytes ?? 0) >= 's1alices2bob'.length, `bytes: ${shown?.bytes}`);

  // null resets ttlMs to the default, maxBytes is set, what is left out stays.
  const altered = await db.alterCollection('sessions', { ttlMs: null, maxBytes: 1 << 20 });
  assert.deepEqual(altered.settings, { ...DEFAULTS, consistency: 'all', maxKeys: 1000, maxBytes: 1 << 20 });
  const consistencyOne = await db.alterCollection('sessions', { consistency: 'one', maxKeys: null });
  assert.deepEqual(consistencyOne.settings, { ...DEFAULTS, consistency: 'one', maxBytes: 1 << 20 });
  // A view's settings go back into an alter as they are.
  assert.deepEqual((await db.alterCollection('sessions', consistencyOne.settings)).settings, consistencyOne.settings);

  // A collection made by its first write is listed too, without settings.
  await db.set('implicit', 'k', 'v', { consistency: 'all' });
  const list = await db.collections();
  const names = list.map((c) => c.name);
  assert.deepEqual(names, [...names].sort(), 'by name');
  assert.ok(!names.some((n) => n.startsWith('_dhrt.')), `the cluster's own are not listed: ${names}`);
  const byName = Object.fromEntries(list.map((c) => [c.name, c]));
  assert.deepEqual(byName.sessions.settings, consistencyOne.settings);
  assert.deepEqual(
    { defined: byName.implicit.defined, keys: byName.implicit.keys, settings: byName.implicit.settings },
    { defined: false, keys: 1, settings: DEFAULTS },
  );
  const ordered = await db.createCollection('ordered.log');
  assert.equal(ordered.placement, 'ordered');
  assert.deepEqual(ordered.settings, DEFAULTS);

  assert.deepEqual(await db.dropCollection('sessions', { consistency: 'all' }), { deleted: 2 });
  assert.equal(await db.get('sessions', 's1'), null);
  // Its tombstones stay until they are purged: described with no settings and no keys.
  const dropped = await db.collection('sessions');
  assert.deepEqual(
    { defined: dropped?.defined, keys: dropped?.keys, settings: dropped?.settings },
    { defined: false, keys: 0, settings: DEFAULTS },
  );
  assert.equal(await db.collection('never-written'), null, 'no settings and no keys');
  // Made again, it starts from the defaults.
  const fresh = await db.createCollection('sessions');
  assert.deepEqual(fresh.settings, DEFAULTS);
});

test('a write past a quota is refused with quota_exceeded; deletes still work', async () => {
  await db.createCollection('capped', { maxKeys: 3 });
  await db.batch('capped', [['a', '1'], ['b', '2'], ['c', '3']], { consistency: 'all' });
  // The node coordinating the write judges it from its own copy of the catalogue, which
  // a quorum write reaches at once on two nodes and within moments on the third.
  const refused = await waitFor(
    async () => {
      try {
        await db.set('capped', 'd', '4', { consistency: 'all' });
        await db.del('capped', 'd', { consistency: 'all' });
        return null;
      } catch (e) {
        return /** @type {DhrtError} */ (e);
      }
    },
    10_000,
    'a fourth key to be refused',
  );
  assert.ok(refused instanceof DhrtError, String(refused));
  assert.equal(refused.code, 'quota_exceeded', refused.message);
  assert.match(refused.message, /quota is 3/);
  assert.equal(await db.get('capped', 'd', { consistency: 'all' }), null, 'nothing written');
  // Replacing a key it holds is no new key; a delete is always accepted.
  await db.set('capped', 'a', 'one', { consistency: 'all' });
  await db.del('capped', 'c', { consistency: 'all' });
  await db.set('capped', 'd', '4', { consistency: 'all' });
  // The quota reset to the default: no quota.
  await db.alterCollection('capped', { maxKeys: null });
  await waitFor(
    async () => {
      await db.set('capped', 'e', '5', { consistency: 'all' });
      return true;
    },
    10_000,
    'a write past the old quota to be accepted',
  );
  assert.equal((await db.collection('capped'))?.keys, 4);
});

test('bad settings and names are refused with a sentence, by the package or the node', async () => {
  const cases = [
    [{ ttl: 5 }, /unknown setting "ttl": the settings are consistency, ttlMs, maxKeys, maxBytes, replicas, select, zoneLabel$/],
    [{ select: 'disk=ssd' }, /select must be an object of labels/],
    [{ select: { disk: 1 } }, /select must be an object of labels/],
    [{ zoneLabel: 5 }, /zoneLabel must be a label key/],
    [{ replicas: 2.5 }, /whole number/],
    [{ maxKeys: 1.5 }, /whole number/],
    [{ maxBytes: '10' }, /maxBytes must be a number/],
    [{ consistency: 'most' }, /quorum/],
    [{ ttlMs: -1 }, /ttlMs/],
    ['all', /must be an object/],
  ];
  for (const [settings, says] of cases) {
    const err = await rejection(db.createCollection('bad', /** @type {any} */ (settings)));
    assert.equal(err.code, 'invalid_input', err.message);
    assert.match(err.message, says);
  }
  // What the node checks: no `default` level, no zero quota, a valid name, and none of
  // the cluster's own collections.
  for (const [name, settings, code, says] of [
    ['bad', { consistency: 'default' }, 'invalid_input', /must be a level/],
    ['bad', { maxKeys: 0 }, 'invalid_input', /quota of 0 keys/],
    ['bad', { replicas: 65 }, 'invalid_input', /1 to 64 replicas of each key, not 65/],
    ['no spaces', {}, 'invalid_input', /./],
    ['_dhrt.tokens', {}, 'forbidden', /reserved/],
  ]) {
    const err = await rejection(db.createCollection(/** @type {string} */ (name), settings));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, /** @type {RegExp} */ (says));
  }
  assert.equal(await db.collection('bad'), null, 'nothing was created');
  const noChanges = await rejection(db.alterCollection('bad', /** @type {any} */ (undefined)));
  assert.equal(noChanges.code, 'invalid_input');
  assert.match(noChanges.message, /changes must be an object/);
});

test('a layout setting moves the collection\'s data while it serves', async () => {
  // Two replicas instead of the cluster's three: the settings say so at once, the
  // layout in use changes once the move is done.
  const made = await db.createCollection('hot', { replicas: 2 });
  assert.deepEqual(made.settings, { ...DEFAULTS, replicas: 2 });
  assert.deepEqual(made.layout.current, CLUSTER_LAYOUT, 'the layout in use is the cluster\'s until the move ends');
  assert.equal(made.replicas, 3);
  const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
  await db.batch('hot', keys.map((k) => [k, `v-${k}`]), { consistency: 'all' });
  /** @type {Set<string>} */
  const phases = new Set();
  const done = await waitFor(
    async () => {
      const c = await db.collection('hot');
      if (c?.layout.moving) {
        const m = c.layout.moving;
        phases.add(m.phase);
        assert.deepEqual(m.to, { replicas: 2, select: {}, zoneLabel: null });
        assert.ok(Number.isSafeInteger(m.startedMs) && m.startedMs > 0, `startedMs: ${m.startedMs}`);
        // It serves throughout.
        assert.equal(await db.get('hot', 'k0'), 'v-k0');
      }
      return c && c.layout.moving === null && c.replicas === 2 ? c : null;
    },
    60_000,
    'the move to 2 replicas to end',
  );
  assert.deepEqual(done.layout, { current: { replicas: 2, select: {}, zoneLabel: null }, moving: null });
  assert.deepEqual(done.settings, made.settings);
  for (const p of phases) assert.ok(['announced', 'copying', 'joint'].includes(p), `phase ${p}`);
  // Every key survived it, read from both of its replicas.
  const values = await db.getMany('hot', keys, { consistency: 'all' });
  assert.deepEqual(values, keys.map((k) => `v-${k}`));
});
