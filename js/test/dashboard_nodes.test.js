// The dashboard's nodes table, rendered in Node without a browser: a node whose disk
// is full or failing says so next to its health; a healthy one shows nothing extra.
//
// Run: node --test js/test/

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderNodes } from '../dashboard/nodes.js';

/** @param {string} storage @param {string} [storageError] */
function view(storage, storageError) {
  return {
    member: { id: 'abcdef0123', addr: '127.0.0.1:7000', status: 'alive', share: 0.5 },
    stats: { keys: 10, tombstones: 0, hintsPending: 0, storage, storageError },
    colour: '#000',
  };
}

test('a node whose storage is full says so, with the way out in its title', () => {
  const tbody = { innerHTML: '' };
  renderNodes(/** @type {any} */ (tbody), [/** @type {any} */ (view('full'))]);
  assert.match(tbody.innerHTML, /data-storage="full"[^>]*>disk full</);
  assert.match(tbody.innerHTML, /free space or add nodes/);
});

test('a failing store shows its error, escaped', () => {
  const tbody = { innerHTML: '' };
  renderNodes(/** @type {any} */ (tbody), [/** @type {any} */ (view('failing', 'EIO <on> x'))]);
  assert.match(tbody.innerHTML, />disk failing</);
  assert.match(tbody.innerHTML, /EIO &#60;on&#62; x/);
});

test('a member joining, leaving or being removed says so next to its health', () => {
  /** @param {string} status @param {boolean} joining @param {boolean} leaving */
  const render = (status, joining, leaving) => {
    const tbody = { innerHTML: '' };
    const v = view('ok');
    renderNodes(/** @type {any} */ (tbody), [/** @type {any} */ ({ ...v, member: { ...v.member, status, joining, leaving } })]);
    return tbody.innerHTML;
  };
  assert.match(render('syncing', true, false), /class="change"[^>]*>joining</);
  assert.match(render('alive', false, true), /class="change"[^>]*>leaving</);
  assert.match(render('dead', false, true), /class="change"[^>]*>being removed</);
  assert.doesNotMatch(render('alive', false, false), /class="change"/);
});

test('a healthy store adds nothing', () => {
  const tbody = { innerHTML: '' };
  renderNodes(/** @type {any} */ (tbody), [/** @type {any} */ (view('ok'))]);
  assert.doesNotMatch(tbody.innerHTML, /data-storage/);
});
