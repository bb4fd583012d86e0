// The dashboard in a real browser: headless Chromium (driven by playwright-core)
// against a local 3-node cluster. Screenshots go to target/artifacts/browser/.
//
// Run: node --test js/browser/ (scripts/test.sh does, after building target/debug/dhrt).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { DHRT_BIN, startCluster } from '../test/cluster.js';
import { FLAGS } from './pages.js';

const ARTIFACTS = fileURLToPath(new URL('../../target/artifacts/browser/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let cluster;
let context;
let page;
let profile;
const problems = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  cluster = await startCluster(3, { args: ['--label', 'zone=eu-1', '--label', 'disk=ssd'] });
  profile = mkdtempSync(join(tmpdir(), 'dhrt-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1440, height: 900 },
    timeout: 60_000,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
});

after(async () => {
  await context?.close();
  cluster?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
const statusOf = (addr) => page.locator(`#nodes tr[data-node="${addr}"]`).getAttribute('data-status');

/** `dhrt ARGS...` with the cluster's first node, bounded in time. */
function cli(...args) {
  const r = spawnSync(DHRT_BIN, [...args, '--node', cluster.nodes[0].addr], { timeout: 20_000, encoding: 'utf8' });
  assert.equal(r.status, 0, `dhrt ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('the dashboard shows three healthy nodes and the ring', async () => {
  await page.goto(`http://${cluster.nodes[0].addr}/dashboard`);
  await page.waitForFunction(() => document.querySelectorAll('#nodes tr[data-status="alive"]').length === 3);
  assert.equal(await page.locator('#sum-healthy').textContent(), '3 / 3');
  assert.equal(await page.locator('#ring path.vnode').count(), 96, '3 nodes × 32 vnodes');
  assert.equal(await page.locator('#legend li').count(), 3);
  await page.waitForFunction(() => document.querySelectorAll('#sync .row').length === 3);
  // Every node's labels, as it was started with them (--label).
  const labels = await page.locator('#nodes tr[data-status="alive"] td.node .labels').allTextContents();
  assert.deepEqual(labels, ['disk=ssdzone=eu-1', 'disk=ssdzone=eu-1', 'disk=ssdzone=eu-1']);
  await shot('1-three-healthy-nodes');
  assert.deepEqual(problems, []);
});

test('a key written from the CLI appears live without a reload', async () => {
  await page.fill('#collection', 'users');
  await page.dispatchEvent('#collection', 'change');
  await page.waitForSelector('#watch-state[data-state="live"]');
  const url = page.url();
  cli('set', 'users', 'alice', 'admin');
  await page.waitForSelector('#feed li[data-key="alice"]');
  await page.waitForSelector('#keys tr[data-key="alice"]');
  assert.match(await page.locator('#keys tr[data-key="alice"]').textContent(), /admin/);
  cli('set', 'users', 'alice', 'root');
  await page.waitForFunction(() => /root/.test(document.querySelector('#keys tr[data-key="alice"]')?.textContent ?? ''));
  assert.equal(page.url(), url, 'no navigation happened');
  await page.click('#keys tr[data-key="alice"]');
  await page.waitForSelector('#ring circle.marker');
  assert.equal(await page.locator('#feed li[data-key="alice"]').count(), 2, 'both changes are in the feed');
  await shot('2-key-written-from-the-cli');
  assert.deepEqual(problems, []);
});

test('the collections view lists settings and sizes, and the key browser picks from it', async () => {
  // Settings given through the page's own client, keys written from the CLI.
  await page.evaluate(() =>
    window.db.createCollection('capped', { consistency: 'all', ttlMs: 3_600_000, maxKeys: 4, maxBytes: 1 << 20 }),
  );
  for (const k of ['a', 'b', 'c']) cli('set', 'capped', k, 'value', '--consistency', 'all');
  const row = '#collections-table tr[data-collection="capped"]';
  const cell = (setting) => page.locator(`${row} td[data-setting="${setting}"]`).textContent();
  // Refreshed with the other panels: the keys arrive without a reload.
  await page.waitForFunction((sel) => document.querySelector(`${sel} td[data-setting="keys"]`)?.textContent === '3', row);
  assert.equal(await cell('consistency'), 'all');
  assert.equal(await cell('ttl'), '1 h');
  assert.match(await cell('max-keys'), /^4 75%$/);
  assert.match(await cell('max-bytes'), /^1\.0 MiB 0%$/);
  assert.match(await page.locator(row).textContent(), /\b3\b[\s\S]*hashed/, 'replicas and placement');
  // A collection made by its first write is listed too, and says it has no settings.
  const users = '#collections-table tr[data-collection="users"]';
  assert.match(await page.locator(users).textContent(), /no settings/);
  assert.equal(await page.locator(`${users} td[data-setting="consistency"]`).textContent(), 'default');

  // The key browser's list is the same list; picking one opens it.
  const picks = await page.locator('#collection-pick option').evaluateAll((os) => os.map((o) => o.getAttribute('value')));
  assert.ok(picks.includes('capped') && picks.includes('users'), `${picks}`);
  assert.equal(await page.locator('#collection-pick').inputValue(), 'users', 'the open collection is shown picked');
  await page.selectOption('#collection-pick', 'capped');
  await page.waitForFunction(() => /page 1 · 3 keys · end/.test(document.getElementById('keys-note')?.textContent ?? ''));
  assert.equal(await page.locator('#collection').inputValue(), 'capped');
  await page.waitForSelector('#watch-state[data-state="live"]');
  await page.waitForSelector(`${row}.selected`);
  // Typing any name still works; one not listed leaves the list unpicked.
  await page.fill('#collection', 'not-listed-yet');
  await page.dispatchEvent('#collection', 'change');
  await page.waitForFunction(() => /page 1 · 0 keys · end/.test(document.getElementById('keys-note')?.textContent ?? ''));
  assert.equal(await page.locator('#collection-pick').inputValue(), '');
  // Clicking a row of the view opens it in the key browser too.
  await page.click(users);
  await page.waitForFunction(() => document.getElementById('collection')?.value === 'users');
  await page.waitForSelector('#keys tr[data-key="alice"]');

  // A quota reached: the view marks it full, and the page's client hears quota_exceeded.
  cli('set', 'capped', 'd', 'value', '--consistency', 'all');
  await page.waitForFunction((sel) => document.querySelector(`${sel} .use[data-level="full"]`) !== null, row);
  const refused = await page.evaluate(() =>
    window.db.set('capped', 'e', 'value').then(() => 'written', (e) => `${e.code}: ${e.message}`),
  );
  assert.match(refused, /^quota_exceeded: .*quota is 4/);
  await shot('5-collections');
  assert.deepEqual(problems, []);
});

test('the collections view shows a collection\'s layout, and its move while it lasts', async () => {
  // Every node is labelled disk=ssd and zone=eu-1: the move to 2 replicas on ssd nodes,
  // spread by zone, takes a few seconds (each phase waits out the request timeout).
  const made = await page.evaluate(() =>
    window.db.createCollection('hot', { replicas: 2, select: { disk: 'ssd' }, zoneLabel: 'zone' }),
  );
  assert.deepEqual(made.settings.select, { disk: 'ssd' });
  const row = '#collections-table tr[data-collection="hot"]';
  const cell = (setting) => page.locator(`${row} td[data-setting="${setting}"]`).textContent();
  await page.waitForSelector(`${row} .move`, { timeout: 30_000 });
  assert.match(
    await page.locator(`${row} .move`).textContent(),
    /^moving: (announced|copying|joint) → 2 on disk=ssd, spread by zone$/,
  );
  assert.equal(await page.locator(`${row} td:nth-child(2)`).textContent(), '3', 'N in use until the move ends');
  await shot('6-collection-moving');
  await page.waitForFunction((sel) => {
    const r = document.querySelector(sel);
    return r !== null && r.querySelector('.move') === null && r.querySelector('td:nth-child(2)')?.textContent === '2';
  }, row, { timeout: 60_000 });
  assert.equal(await cell('select'), 'disk=ssd');
  assert.equal(await cell('zones'), 'zone');
  // Another collection keeps the cluster's layout.
  assert.equal(await page.locator('#collections-table tr[data-collection="capped"] td[data-setting="select"]').textContent(), 'any');
  assert.equal(await page.locator('#collections-table tr[data-collection="capped"] td[data-setting="zones"]').textContent(), 'none');
  const shown = await page.evaluate(() => window.db.collection('hot'));
  assert.deepEqual(shown?.layout, { current: { replicas: 2, select: { disk: 'ssd' }, zoneLabel: 'zone' }, moving: null });
  assert.deepEqual(problems, []);
});

test('a killed node turns suspect then dead, and reads go through another replica', async () => {
  const victim = cluster.nodes[2];
  // Keys whose first replica is the victim, written through the page's light peer.
  const owned = await page.evaluate(async (addr) => {
    const keys = [];
    for (let i = 0; keys.length < 5 && i < 500; i++) {
      const k = `owned-${i}`;
      if (window.db.route('users', k)[0] === addr) {
        await window.db.set('users', k, `v${i}`);
        keys.push(k);
      }
    }
    return keys;
  }, victim.addr);
  assert.equal(owned.length, 5);
  victim.kill();
  const reads = await page.evaluate((keys) => Promise.all(keys.map((k) => window.db.get('users', k))), owned);
  assert.deepEqual(reads, owned.map((k) => `v${k.slice('owned-'.length)}`), 'read through another replica');
  await page.waitForFunction((addr) => document.querySelector(`#nodes tr[data-node="${addr}"]`)?.dataset.status === 'suspect', victim.addr, { timeout: 30_000 });
  await shot('3-killed-node-suspect');
  await page.waitForFunction((addr) => document.querySelector(`#nodes tr[data-node="${addr}"]`)?.dataset.status === 'dead', victim.addr, { timeout: 60_000 });
  assert.equal(await statusOf(victim.addr), 'dead');
  assert.equal(await page.locator('#sum-healthy').textContent(), '2 / 3');
  // Still answering, now with the ring that knows.
  const again = await page.evaluate((keys) => Promise.all(keys.map((k) => window.db.get('users', k))), owned);
  assert.deepEqual(again, reads);
  cli('set', 'users', 'bob', 'after the death');
  await page.waitForSelector('#feed li[data-key="bob"]');
  await shot('4-killed-node-dead');
  const unexpected = problems.filter((p) => !/WebSocket|ERR_CONNECTION_REFUSED|net::/.test(p));
  assert.deepEqual(unexpected, [], 'only the dead node\'s refused connections are logged');
});
