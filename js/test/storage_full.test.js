// A node without room, from the package: a write rejects with a `DhrtError` of code
// `storage_full`, reads and deletes still work. An impossible `--min-free-mb` reserve
// (more than any disk holds) makes every disk "full", so no root is needed.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, DhrtError } from '../src/index.js';
import { startNode, waitFor } from './cluster.js';

const dir = mkdtempSync(join(tmpdir(), 'dhrt-storage-full-'));
/** @type {Array<() => void>} */
const cleanup = [];

after(() => {
  for (const c of cleanup) c();
  rmSync(dir, { recursive: true, force: true });
});

test('a node without room rejects writes with storage_full and still reads and deletes', async () => {
  const data = join(dir, 'data');
  const first = await startNode(['--data-dir', data, '--min-free-mb', '0']);
  let db = await connect(`ws://${first.addr}`);
  await db.set('users', 'ada', 'lovelace', { consistency: 'one' });
  db.close();
  first.proc.kill('SIGTERM');
  await new Promise((resolve) => first.proc.once('exit', resolve));

  const node = await startNode(['--data-dir', data, '--min-free-mb', String(2 ** 30)]);
  cleanup.push(node.kill);
  db = await waitFor(() => connect(`ws://${node.addr}`), 20_000, 'the node to serve');
  cleanup.push(() => db.close());
  await assert.rejects(db.set('users', 'ada', 'byron', { consistency: 'one' }), (e) => {
    assert.ok(e instanceof DhrtError, String(e));
    assert.equal(e.code, 'storage_full');
    assert.match(e.message, /storage is full/);
    return true;
  });
  assert.equal(await db.get('users', 'ada', { consistency: 'one' }), 'lovelace');
  await db.del('users', 'ada', { consistency: 'one' });
  assert.equal(await db.get('users', 'ada', { consistency: 'one' }), null);
});
