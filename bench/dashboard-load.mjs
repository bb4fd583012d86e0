// Does the dashboard stay responsive with 10 nodes and 1M keys? Starts 10 in-memory
// nodes (target/release/dhrt), writes KEYS keys with `dhrt bench`, opens /dashboard in
// headless Chromium and measures: the time until the page shows 10 healthy nodes and
// the collections view lists the collection with its size, the key browser's first page
// and next pages, and the browser's main-thread long tasks (> 50 ms) over 20 s while a
// write load streams changes into the key browser's watch.
// Prints JSON lines; saves a screenshot to target/artifacts/browser/. Not a test.
//
//   cargo build --release -p dhrt && node bench/dashboard-load.mjs [keys]
//   (from the repository root; js/node_modules must hold playwright-core: npm ci in js/)

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

process.env.DHRT_BIN ??= fileURLToPath(new URL('../target/release/dhrt', import.meta.url));
const { startCluster } = await import('../js/test/cluster.js');
const { chromium } = createRequire(new URL('../js/package.json', import.meta.url))('playwright-core');

const KEYS = Number(process.argv[2] ?? 1_000_000);
const NODES = 10;
const ARTIFACTS = fileURLToPath(new URL('../target/artifacts/browser/', import.meta.url));
const report = (o) => console.log(JSON.stringify(o));

const cluster = await startCluster(NODES);
const addr = cluster.nodes[0].addr;
const profile = mkdtempSync(join(tmpdir(), 'dhrt-chromium-'));
let context;
let load;
try {
  let t = Date.now();
  const bench = spawnSync(
    process.env.DHRT_BIN,
    ['bench', '--node', addr, '--workload', 'set', '--collection', 'users', '--requests', String(KEYS),
      '--keyspace', String(KEYS), '--connections', '20', '--pipeline', '32', '--value-size', '64', '--json'],
    { encoding: 'utf8', timeout: 900_000 },
  );
  if (bench.status !== 0) throw new Error(`dhrt bench failed: ${bench.stderr}`);
  report({ step: 'wrote keys', keys: KEYS, seconds: (Date.now() - t) / 1000, bench: JSON.parse(bench.stdout.trim().split('\n').at(-1)).ops_per_sec });

  mkdirSync(ARTIFACTS, { recursive: true });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1440, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(60_000);
  await page.addInitScript(() => {
    window.__long = [];
    new PerformanceObserver((list) => list.getEntries().forEach((e) => window.__long.push(e.duration))).observe({ type: 'longtask', buffered: true });
  });
  t = Date.now();
  await page.goto(`http://${addr}/dashboard`);
  await page.waitForFunction((n) => document.querySelectorAll('#nodes tr[data-status="alive"]').length === n, NODES);
  report({ step: `page shows ${NODES} healthy nodes`, ms: Date.now() - t });
  const usersKeys = '#collections-table tr[data-collection="users"] td[data-setting="keys"]';
  await page.waitForSelector(usersKeys);
  report({ step: 'collections view lists users', ms: Date.now() - t, keys: await page.locator(usersKeys).textContent() });

  await page.fill('#collection', 'users');
  t = Date.now();
  await page.dispatchEvent('#collection', 'change');
  await page.waitForFunction(() => /page 1 · 50 keys/.test(document.querySelector('#keys-note')?.textContent ?? ''));
  report({ step: 'key browser: first page of 50 (of 1M)', ms: Date.now() - t });
  const pages = [];
  for (let i = 2; i <= 6; i++) {
    t = Date.now();
    await page.click('#next-page');
    await page.waitForFunction((n) => new RegExp(`page ${n} · 50 keys`).test(document.querySelector('#keys-note')?.textContent ?? ''), i);
    pages.push(Date.now() - t);
  }
  report({ step: 'key browser: next page', ms: pages });
  await page.click('#first-page');
  await page.waitForSelector('#watch-state[data-state="live"]');

  // 20 s of writes to the watched collection: changes stream into the page.
  await page.evaluate(() => (window.__long = []));
  load = spawn(process.env.DHRT_BIN, ['bench', '--node', addr, '--workload', 'set', '--collection', 'users',
    '--keyspace', String(KEYS), '--connections', '10', '--pipeline', '2', '--value-size', '64', '--duration', '20'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const feed0 = Date.now();
  await new Promise((r) => setTimeout(r, 20_000));
  const long = await page.evaluate(() => window.__long);
  const rate = await page.locator('#feed-rate').textContent();
  const watch = await page.locator('#watch-state').textContent();
  const feedItems = await page.locator('#feed li').count();
  const rows = await page.locator('#keys tbody tr').count();
  const listed = await page.locator(usersKeys).textContent();
  report({ step: 'under a write load for 20 s', seconds: (Date.now() - feed0) / 1000, feed: rate, feedItems, watch, loadExit: load.exitCode, renderedRows: rows, collectionKeys: listed, longTasks: long.length, longestTaskMs: Math.round(Math.max(0, ...long)), totalLongMs: Math.round(long.reduce((a, b) => a + b, 0)) });
  t = Date.now();
  await page.click('#next-page');
  await page.waitForFunction(() => /page 2 · 50 keys/.test(document.querySelector('#keys-note')?.textContent ?? ''));
  report({ step: 'key browser: next page during the load', ms: Date.now() - t });
  await page.screenshot({ path: join(ARTIFACTS, `load-${NODES}-nodes-${KEYS}-keys.png`), fullPage: true });
} finally {
  load?.kill();
  await context?.close();
  cluster.stop();
  rmSync(profile, { recursive: true, force: true });
}
