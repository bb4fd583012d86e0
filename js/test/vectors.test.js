// The shared test vectors (tests/vectors/*.json), checked from JavaScript through the
// WebAssembly module: the same files Rust (core/tests/vectors.rs) and Python check, so
// the three hosts agree byte for byte on where keys live and what frames hold.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { position } from '../src/index.js';
import { loadWasm } from '../src/wasm.js';

const vectors = (name) =>
  JSON.parse(readFileSync(new URL(`../../tests/vectors/${name}.json`, import.meta.url), 'utf8')).cases;
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');

test('ring positions match the shared vectors', async () => {
  const wasm = await loadWasm();
  const cases = vectors('hash');
  assert.ok(cases.length >= 10);
  for (const c of cases) {
    const key = hex(c.key_hex);
    const got =
      c.placement === 'hashed' ? wasm.hashedPosition(c.collection, key) : wasm.orderedPosition(key);
    assert.equal(got, BigInt(c.position), JSON.stringify(c));
  }
  // The package's own helper picks the placement from the collection name.
  const hashed = cases.find((c) => c.placement === 'hashed');
  assert.equal(await position(hashed.collection, hex(hashed.key_hex)), BigInt(hashed.position));
});

test('requests encode to the shared frames', async () => {
  const wasm = await loadWasm();
  const byName = Object.fromEntries(vectors('wire').map((c) => [c.name, c]));
  const te = new TextEncoder();
  const set = wasm.encodeRequest(42, {
    op: 'set',
    collection: 'users',
    key: te.encode('ada'),
    value: te.encode('lovelace'),
    consistency: 'quorum',
    ttlMs: 60000,
  });
  assert.equal(toHex(set), byName['client set'].hex);
  const get = wasm.encodeRequest(43, { op: 'get', collection: 'default', key: te.encode('hello'), consistency: '2' });
  assert.equal(toHex(get), byName['client get'].hex);
  assert.throws(() => wasm.encodeRequest(1, { op: 'get', collection: 'c', key: te.encode('k'), consistency: 'most' }), /quorum/);
  assert.throws(() => wasm.encodeRequest(1, { op: 'fly' }), /invalid request/);
});

test('responses decode from the shared frames', async () => {
  const wasm = await loadWasm();
  const byName = Object.fromEntries(vectors('wire').map((c) => [c.name, c]));
  const value = wasm.decodeResponse(hex(byName['get response'].hex));
  assert.equal(value.id, 43);
  assert.equal(value.reply.kind, 'value');
  assert.equal(new TextDecoder().decode(value.reply.value), 'world');
  assert.equal(value.reply.ts, (1700000000000n << 16n) | 3n, 'the timestamp stays whole as a BigInt');
  const missing = wasm.decodeResponse(hex(byName['missing key response'].hex));
  assert.equal(missing.reply.kind, 'value');
  assert.equal(missing.reply.value, undefined);
  const error = wasm.decodeResponse(hex(byName['quorum error response'].hex));
  assert.deepEqual(
    { kind: error.reply.kind, code: error.reply.code, acked: error.reply.acked },
    { kind: 'error', code: 'quorum_not_reached', acked: [1, 2] },
  );
  assert.throws(() => wasm.decodeResponse(hex(byName['client get'].hex)), /malformed|unknown variant/);
  assert.throws(() => wasm.decodeResponse(new Uint8Array([0xff, 0])), /version 255/);
});
