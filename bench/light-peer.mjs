// The npm package's read latency from Node: sequential gets (one in flight) through
// the WebAssembly light peer against a running node — the figure
// native/examples/client_latency.rs measures for the Rust client, with the same keys,
// values and order (bench/light-peer.sh runs both; docs/benchmarks.md has the table).
//
//   node bench/light-peer.mjs ws://127.0.0.1:7453 [gets] [keys]
//
// Prints one JSON line: p50, p99 and mean in µs, and reads per second.

import { connect } from '../js/src/index.js';

const [url = 'ws://127.0.0.1:7453', getsArg = '20000', keysArg = '10000'] = process.argv.slice(2);
const gets = Number(getsArg);
const keys = Number(keysArg);
const COLLECTION = 'latency';
const key = (i) => `k${String(i).padStart(8, '0')}`;
const value = 'v'.repeat(100);

const db = await connect(url);
for (let start = 0; start < keys; start += 1000) {
  const items = [];
  for (let i = start; i < Math.min(start + 1000, keys); i++) items.push([key(i), value]);
  await db.batch(COLLECTION, items);
}
const order = (n) => Number((BigInt(n) * 7919n) % BigInt(keys));
for (let n = 0; n < 1000; n++) await db.get(COLLECTION, key(order(n)));
const took = new Float64Array(gets);
const began = process.hrtime.bigint();
for (let n = 0; n < gets; n++) {
  const t = process.hrtime.bigint();
  const v = await db.get(COLLECTION, key(order(n)));
  took[n] = Number(process.hrtime.bigint() - t) / 1000;
  if (v === null) throw new Error(`${key(order(n))} is missing`);
}
const secs = Number(process.hrtime.bigint() - began) / 1e9;
took.sort();
const at = (q) => took[Math.min(took.length - 1, Math.floor(took.length * q))];
const mean = took.reduce((a, b) => a + b, 0) / took.length;
console.log(
  JSON.stringify({
    client: 'js-light-peer',
    node: process.version,
    gets,
    p50_us: +at(0.5).toFixed(1),
    p99_us: +at(0.99).toFixed(1),
    mean_us: +mean.toFixed(1),
    gets_per_sec: Math.round(gets / secs),
  }),
);
db.close();
