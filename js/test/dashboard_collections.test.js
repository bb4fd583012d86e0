// The dashboard's collections table, rendered in Node without a browser: replicas,
// placement, the layout in use (selector, zones) and a move under way, each setting (or
// that it is the cluster's default), sizes and how much of a quota is used; names and
// labels escaped.
//
// Run: node --test js/test/

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { duration, moveText, renderCollections, size } from '../dashboard/nodes.js';

const DEFAULTS = { consistency: null, ttlMs: null, maxKeys: null, maxBytes: null, replicas: null, select: {}, zoneLabel: null };
const CLUSTER_LAYOUT = { replicas: null, select: {}, zoneLabel: null };

/** @param {object} fields */
function info(fields) {
  return {
    name: 'c',
    defined: true,
    placement: 'hashed',
    replicas: 3,
    keys: 0,
    bytes: 0,
    settings: DEFAULTS,
    layout: { current: CLUSTER_LAYOUT, moving: null },
    ...fields,
  };
}

/** @param {any[]} collections @param {string} [open] @param {number} [clusterReplicas] */
function render(collections, open, clusterReplicas) {
  const tbody = { innerHTML: '' };
  renderCollections(/** @type {any} */ (tbody), collections, open, clusterReplicas);
  return tbody.innerHTML;
}

/** The row of `name`. */
function rowOf(html, name) {
  return html.split('<tr').find((r) => r.includes(`data-collection="${name}"`)) ?? '';
}

/** The text of cell `setting` of the row of `name`. */
function cell(html, name, setting) {
  const row = html.split('<tr').find((r) => r.includes(`data-collection="${name}"`)) ?? '';
  const m = new RegExp(`data-setting="${setting}">(.*?)</td>`, 's').exec(row);
  return m ? m[1].replace(/<[^>]+>/g, '').trim() : undefined;
}

test('every setting shows, or that it is the default', () => {
  const html = render([
    info({
      name: 'sessions',
      keys: 950,
      bytes: 3 * 1024 * 1024,
      settings: { consistency: 'all', ttlMs: 3_600_000, maxKeys: 1000, maxBytes: 4 * 1024 * 1024 },
    }),
    info({ name: 'ordered.log', placement: 'ordered', replicas: 2, defined: false, keys: 12, bytes: 700 }),
  ], 'sessions');
  assert.equal(cell(html, 'sessions', 'consistency'), 'all');
  assert.equal(cell(html, 'sessions', 'ttl'), '1 h');
  assert.equal(cell(html, 'sessions', 'max-keys'), '1000 95%');
  assert.match(html, /data-level="near">95%/, 'a quota nearly used is marked');
  assert.equal(cell(html, 'sessions', 'bytes'), '3.0 MiB');
  assert.equal(cell(html, 'sessions', 'max-bytes'), '4.0 MiB 75%');
  assert.match(html, /<tr data-collection="sessions" class="selected">/, 'the open one is marked');
  assert.equal(cell(html, 'ordered.log', 'consistency'), 'default');
  assert.equal(cell(html, 'ordered.log', 'ttl'), 'none');
  assert.equal(cell(html, 'ordered.log', 'max-keys'), 'none');
  assert.equal(cell(html, 'ordered.log', 'bytes'), '700 B');
  const row = html.split('<tr').find((r) => r.includes('ordered.log')) ?? '';
  assert.match(row, /<td class="num">2<\/td>\s*<td>ordered<\/td>/, 'replicas and placement');
  assert.match(row, /no settings/, 'a collection made by its first write says so');
  // The cluster's layout: any node, no zones, nothing moving.
  assert.equal(cell(html, 'ordered.log', 'select'), 'any');
  assert.equal(cell(html, 'ordered.log', 'zones'), 'none');
  assert.ok(!html.includes('moving'), 'no move under way');
});

test('the layout in use shows: its selector and zones', () => {
  const layout = { replicas: 2, select: { disk: 'ssd', rack: 'r1' }, zoneLabel: 'zone' };
  const html = render([
    info({
      name: 'hot',
      replicas: 2,
      settings: { ...DEFAULTS, ...layout },
      layout: { current: layout, moving: null },
    }),
  ]);
  const row = rowOf(html, 'hot');
  assert.match(row, /<td class="num">2<\/td>\s*<td>hashed<\/td>/, 'N in use, then placement');
  assert.equal(cell(html, 'hot', 'select'), 'disk=ssd,rack=r1');
  assert.equal(cell(html, 'hot', 'zones'), 'zone');
  assert.ok(!row.includes('moving'), 'no move under way');
  // Labels are escaped like names.
  const odd = render([info({ name: 'odd', layout: { current: { replicas: null, select: { '<k>': '"v"' }, zoneLabel: '<z>' }, moving: null } })]);
  assert.ok(!odd.includes('<k>') && !odd.includes('<z>'), odd);
  assert.equal(cell(odd, 'odd', 'select'), '&#60;k&#62;=&#34;v&#34;');
  assert.equal(cell(odd, 'odd', 'zones'), '&#60;z&#62;');
});

test('a move under way shows its phase and target; the layout in use stays until it is done', () => {
  const to = { replicas: 5, select: { disk: 'ssd' }, zoneLabel: null };
  const html = render([
    info({
      name: 'hot',
      settings: { ...DEFAULTS, ...to },
      layout: { current: CLUSTER_LAYOUT, moving: { to, phase: 'copying', startedMs: 1_700_000_000_000 } },
    }),
  ]);
  const row = rowOf(html, 'hot');
  assert.match(row, /<span class="change move" data-move="copying"[^>]*>moving: copying → 5 on disk=ssd<\/span>/);
  assert.match(row, /<td class="num">3<\/td>\s*<td>hashed<\/td>/, 'N in use is the old layout\'s');
  assert.equal(cell(html, 'hot', 'select'), 'any', 'the selector in use');
  assert.equal(cell(html, 'hot', 'zones'), 'none');
  // Back to the cluster's layout, spread over zones: the cluster's factor when known.
  const back = { replicas: null, select: {}, zoneLabel: 'zone' };
  const moving = { to: back, phase: 'joint', startedMs: 1 };
  assert.equal(moveText(moving, 3), 'moving: joint → 3 on any, spread by zone');
  assert.equal(moveText({ ...moving, phase: 'announced' }), 'moving: announced → default on any, spread by zone');
  const joint = render([info({ name: 'x', layout: { current: to, moving } })], undefined, 3);
  assert.match(rowOf(joint, 'x'), /data-move="joint"[^>]*>moving: joint → 3 on any, spread by zone</);
  // A target's labels are escaped.
  const odd = { ...moving, to: { replicas: 1, select: { a: '<b>' }, zoneLabel: null } };
  const escaped = render([info({ name: 'y', layout: { current: CLUSTER_LAYOUT, moving: odd } })]);
  assert.ok(!escaped.includes('<b>'), escaped);
  assert.match(escaped, /moving: joint → 1 on a=&#60;b&#62;</);
});

test('a full quota is marked, and names are escaped', () => {
  const html = render([info({ name: '<b>"x"', keys: 3, settings: { ...DEFAULTS, maxKeys: 3 } })]);
  assert.match(html, /data-level="full">100%/);
  assert.ok(!html.includes('<b>'), html);
  assert.match(html, /&#60;b&#62;&#34;x&#34;/);
  assert.match(render([]), /no collection yet/);
});

test('sizes and durations read as people write them', () => {
  assert.deepEqual([0, 512, 1536, 1024 ** 3 * 250].map(size), ['0 B', '512 B', '1.5 KiB', '250 GiB']);
  assert.deepEqual([500, 30_000, 90_000, 5_400_000, 7 * 86_400_000].map(duration), ['500 ms', '30 s', '1.5 min', '1.5 h', '7 d']);
});
