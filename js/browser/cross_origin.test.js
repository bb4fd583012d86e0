// Web pages of another origin against a local 2-node cluster, in headless Chromium: a
// page served by a tiny server on another port tries what any site a developer visits
// could try — a no-cors POST to the seed route, a WebSocket to /v1/ws that writes, a
// WebSocket to /v1/peer that joins a fake member — and the cluster, asked afterwards,
// shows none of it happened. The dashboard, served by a member, still reads and writes
// through every member. See docs/security.md, "Browsers and web pages".
//
// Run: node --test browser/cross_origin.test.js (from js/, after building target/debug/dhrt).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startCluster } from '../test/cluster.js';
import { launchChromium, servePage } from './pages.js';

/** The wire frames of the attacks (one version byte, then MessagePack). */
const VECTORS = JSON.parse(readFileSync(new URL('../../tests/vectors/wire.json', import.meta.url), 'utf8'));
/** `Request 42: Set users/ada = lovelace`, as a client sends it. */
const SET_FRAME = Buffer.from(VECTORS.cases.find((c) => c.name === 'client set').hex, 'hex');
/** The fake member's id and address (nothing listens there). */
const FAKE_ID = 0x7e57_0000_0bad_f00dn;
const FAKE_ADDR = '127.0.0.1:1';

/**
 * MessagePack as rmp-serde writes the peer messages: strings, arrays, one-pair maps,
 * u64s as BigInt, small numbers.
 * @param {unknown} v
 * @returns {number[]}
 */
function pack(v) {
  if (typeof v === 'string') {
    const b = Buffer.from(v);
    assert.ok(b.length < 32);
    return [0xa0 | b.length, ...b];
  }
  if (typeof v === 'bigint') {
    const b = Buffer.alloc(9);
    b[0] = 0xcf;
    b.writeBigUInt64BE(v, 1);
    return [...b];
  }
  if (typeof v === 'number') {
    assert.ok(Number.isInteger(v) && v >= 0 && v < 128);
    return [v];
  }
  if (Array.isArray(v)) {
    assert.ok(v.length < 16);
    return [0x90 | v.length, ...v.flatMap(pack)];
  }
  const entries = Object.entries(/** @type {object} */ (v));
  return [0x80 | entries.length, ...entries.flatMap(([k, x]) => [...pack(k), ...pack(x)])];
}

/** `Gossip(Join { member })` for the fake member: what the attack in issue 13 sent. */
const JOIN_FRAME = Buffer.from([
  1,
  ...pack({ Gossip: { Join: [[FAKE_ID, FAKE_ADDR, [1n << 60n, 2n << 60n, 3n << 60n, 4n << 60n], 'alive', 0]] } }),
]);

/**
 * The attacker's page: tries the three attacks against `node` and reports what it saw.
 * Every step is bounded (a socket that neither opens nor fails in 10 s counts as not
 * opened).
 */
const ATTACK = `<!doctype html><title>a page on another origin</title>
<script>
function attempt(url, frame) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    let opened = false;
    const done = (how) => { clearTimeout(timer); try { ws.close(); } catch {} resolve({ opened, how }); };
    const timer = setTimeout(() => done('timeout'), 10000);
    ws.onopen = () => {
      opened = true;
      ws.send(new Uint8Array(frame));
      // Give the node a moment to act on the frame (only on a node that let it in).
      setTimeout(() => done('sent'), 1000);
    };
    ws.onerror = () => done('error');
    ws.onclose = () => done('closed');
  });
}
window.attack = async ({ node, peerPath, setFrame, joinFrame }) => {
  const out = {};
  try {
    await fetch('http://' + node + '/users/mallory/pwned', {
      method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: 'x',
    });
    out.post = 'sent';
  } catch (e) {
    out.post = 'failed: ' + e;
  }
  out.ws = await attempt('ws://' + node + '/v1/ws', setFrame);
  out.peer = await attempt('ws://' + node + peerPath, joinFrame);
  return out;
};
</script>`;

let cluster;
let browser;
let site;

before(async () => {
  cluster = await startCluster(2);
  site = await servePage(ATTACK);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await site?.close();
  cluster?.stop();
});

/** GET `path` on `addr` as a program (no Origin): status and JSON body. */
async function get(addr, path) {
  const r = await fetch(`http://${addr}${path}`);
  return { status: r.status, body: await r.json() };
}

test('a page on another origin cannot write, open a client socket or join a member', async () => {
  const [node, other] = cluster.nodes;
  const page = await browser.context.newPage();
  page.setDefaultTimeout(30_000);
  // `localhost` is another site than the node's `127.0.0.1`, as any web site is.
  await page.goto(`http://localhost:${site.port}/`);
  const seen = await page.evaluate((args) => window.attack(args), {
    node: node.addr,
    peerPath: `/v1/peer?node=${FAKE_ID}&version=${SET_FRAME[0]}`,
    setFrame: [...SET_FRAME],
    joinFrame: [...JOIN_FRAME],
  });
  await page.close();
  assert.equal(seen.ws.opened, false, `the client WebSocket opened (${seen.ws.how})`);
  assert.equal(seen.peer.opened, false, `the peer WebSocket opened (${seen.peer.how})`);
  for (const addr of [node.addr, other.addr]) {
    assert.equal((await get(addr, '/users/mallory')).status, 404, 'the no-cors POST wrote');
    assert.equal((await get(addr, '/users/ada')).status, 404, 'the WebSocket wrote');
    const ring = (await get(addr, '/v1/ring')).body;
    assert.deepEqual(
      ring.members.map((m) => m.addr).sort(),
      [node.addr, other.addr].sort(),
      'no member was added',
    );
    assert.equal((await get(addr, '/v1/stats')).body.members.alive, 2);
  }
});

test('the dashboard, served by a member, still reads and writes through every member', async () => {
  const [node, other] = cluster.nodes;
  const page = await browser.context.newPage();
  page.setDefaultTimeout(30_000);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  await page.goto(`http://${node.addr}/dashboard`);
  await page.waitForFunction(() => document.querySelectorAll('#nodes tr[data-status="alive"]').length === 2);
  // Keys whose first replica is the other member: the page's light peer writes them
  // through a WebSocket to the other member's port, from this member's origin.
  const written = await page.evaluate(async (addr) => {
    const keys = [];
    for (let i = 0; keys.length < 3 && i < 500; i++) {
      const k = `dash-${i}`;
      if (window.db.route('users', k)[0] === addr) {
        await window.db.set('users', k, `v${i}`);
        keys.push(k);
      }
    }
    return keys;
  }, other.addr);
  assert.equal(written.length, 3);
  for (const k of written) {
    const { status, body } = await get(other.addr, `/users/${k}`);
    assert.equal(status, 200);
    assert.equal(body.value, `v${k.slice('dash-'.length)}`);
  }
  await page.close();
  assert.deepEqual(problems, []);
});
