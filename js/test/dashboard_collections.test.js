// The dashboard's collections table, rendered in Node without a browser: replicas,
// placement, each setting (or that it is the cluster's default), sizes and how much of
// a quota is used; names escaped.
//
// Run: node --test js/test/

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { duration, renderCollections, size } from '../dashboard/nodes.js';

const DEFAULTS = { consistency: null, ttlMs: null, maxKeys: null, maxBytes: null };

/** @param {object} fields */
function info(fields) {
  return { name: 'c', defined: true, placement: 'hashed', replicas: 3, keys: 0, bytes: 0, settings: DEFAULTS, ...fields };
}

/** @param {any[]} collections @param {string} [open] */
function render(collections, open) {
  const tbody = { innerHTML: '' };
  renderCollections(/** @type {any} */ (tbody), collections, open);
  return tbody.innerHTML;
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
