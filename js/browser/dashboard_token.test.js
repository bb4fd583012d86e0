// The dashboard of a node that requires tokens, in headless Chromium: it asks for a
// token in its form, refuses a wrong one saying so, works once a right one is entered,
// keeps it for the tab's session only (sessionStorage), and never puts it in a URL.
//
// Run: node --test js/browser/ (after building target/debug/dhrt). A screenshot of the
// form goes to target/artifacts/browser/.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { startCluster } from '../test/cluster.js';
import { launchChromium } from './pages.js';

const ADMIN = 'admin-token-of-the-dashboard-test-0123456789';
const ARTIFACTS = fileURLToPath(new URL('../../target/artifacts/browser/', import.meta.url));

let cluster;
let browser;
let page;
let dir = '';
let readToken = '';
/** Every URL the pages asked for (HTTP and WebSocket). */
const urls = [];
const problems = [];

/** @param {import('playwright-core').Page} p */
function watchPage(p) {
  p.setDefaultTimeout(30_000);
  p.on('request', (r) => urls.push(r.url()));
  p.on('websocket', (ws) => urls.push(ws.url()));
  p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dhrt-dash-token-'));
  const file = join(dir, 'admin.token');
  writeFileSync(file, `${ADMIN}\n`, { mode: 0o600 });
  cluster = await startCluster(1, { args: ['--admin-token-file', file], token: ADMIN });
  const addr = cluster.nodes[0].addr;
  const admin = { Authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  const made = await fetch(`http://${addr}/v1/tokens`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ role: 'read', note: 'dashboard test' }),
  });
  readToken = (await made.json()).token;
  assert.equal(made.status, 201);
  const put = await fetch(`http://${addr}/v1/collections/users/keys/ada`, {
    method: 'PUT',
    headers: admin,
    body: 'lovelace',
  });
  assert.ok(put.ok, `PUT answered ${put.status}`);
  browser = await launchChromium();
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  watchPage(page);
});

after(async () => {
  await browser?.close();
  cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the dashboard asks for a token and refuses a wrong one', async () => {
  await page.goto(`http://${cluster.nodes[0].addr}/dashboard`);
  await page.locator('#token-card').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#conn').textContent(), 'this node requires a token');
  await page.fill('#token-input', `${readToken.slice(0, -4)}AAAA`);
  await page.click('#token-submit');
  await page.waitForFunction(() => /refused/.test(document.getElementById('token-error')?.textContent ?? ''));
  assert.ok(await page.locator('#token-card').isVisible(), 'still asking');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('dhrt.token')), null, 'a refused token is not kept');
  assert.equal(await page.locator('#nodes tbody tr').count(), 0, 'nothing shown');
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'token-refused.png') });
});

test('with a right token it works, for this tab only', async () => {
  await page.fill('#token-input', readToken);
  await page.click('#token-submit');
  await page.waitForFunction(() => document.querySelectorAll('#nodes tr[data-status="alive"]').length === 1);
  assert.ok(await page.locator('#token-card').isHidden());
  assert.equal(await page.evaluate(() => sessionStorage.getItem('dhrt.token')), readToken);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing kept beyond the tab');
  // The key browser reads through the token; the cluster's own collections are not listed.
  await page.fill('#collection', 'users');
  await page.locator('#collection').dispatchEvent('change');
  await page.waitForFunction(() => document.querySelector('#keys tbody')?.textContent?.includes('lovelace'));
  const listed = await page.locator('#collections option').evaluateAll((os) => os.map((o) => o.getAttribute('value')));
  assert.ok(listed.includes('users'), `${listed}`);
  assert.ok(!listed.some((n) => n.startsWith('_dhrt.')), `${listed}`);
  // A reload keeps the session's token; another tab asks again.
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('#nodes tr[data-status="alive"]').length === 1);
  assert.ok(await page.locator('#token-card').isHidden());
  const other = await browser.context.newPage();
  watchPage(other);
  await other.goto(`http://${cluster.nodes[0].addr}/dashboard`);
  await other.locator('#token-card').waitFor({ state: 'visible' });
  await other.close();
});

test('the token is in no URL', () => {
  assert.ok(urls.some((u) => u.startsWith('ws://')), 'the page opened WebSockets');
  for (const url of urls) {
    assert.ok(!url.includes(readToken) && !url.includes(encodeURIComponent(readToken)), url);
    assert.ok(!url.includes('token='), url);
  }
  assert.ok(!page.url().includes(readToken));
  assert.deepEqual(problems, []);
});
