/**
 * The dhrt dashboard, served by every node at /dashboard. It is a light peer itself:
 * the npm package `dhrt` (the same JavaScript and WebAssembly, served under
 * /dashboard/dhrt/) connects to the node that served the page, reads the ring every
 * second and each node's stats every second — straight from that node, so a dead node
 * shows as unreachable while the ring still reports what the cluster thinks of it —
 * with the collections (settings and sizes, `db.collections()`) the key browser picks
 * from, and watches the key browser's collection.
 *
 * A node that requires tokens refuses the connection (`unauthorized`): the page then
 * asks for a token in a small form, keeps it in `sessionStorage` (this tab only, gone
 * when it closes; never in the URL) and presents it on every connection (the package
 * sends it as the first WebSocket message). A refused token is forgotten and the form
 * asks again, saying why.
 * @module
 */

import { connect } from '/dashboard/dhrt/src/index.js';
import { LineChart, short } from './chart.js';
import { KeyBrowser } from './keys.js';
import { esc, renderCollections, renderNodes, renderSync, setHtml } from './nodes.js';
import { colours, drawRing } from './ring.js';

const POLL_MS = 1000;
/** Where this tab keeps its token. */
const TOKEN_KEY = 'dhrt.token';
/** Collections of the cluster itself: no token may read them, so they are not listed. */
const RESERVED_PREFIX = '_dhrt.';
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** @type {import('/dashboard/dhrt/src/index.js').Member[]} */
let members = [];
/** @type {Map<string, {stats?: any, error?: string, ops?: number, prev?: {at: number, requests: number}}>} */
const nodes = new Map();
let marker = /** @type {{position: bigint, label: string, replicas: string[]} | null} */ (null);
let replicas = 3;
/** The collections as last listed. @type {import('/dashboard/dhrt/src/index.js').CollectionInfo[]} */
let collections = [];
/** Why the last listing failed, if it did. @type {string | undefined} */
let collectionsError;
/** @type {KeyBrowser | undefined} */
let browser;

const opsChart = new LineChart(/** @type {HTMLCanvasElement} */ ($('ops-chart')), {
  windowMs: 120_000,
  format: short,
});
const keysChart = new LineChart(/** @type {HTMLCanvasElement} */ ($('keys-chart')), {
  windowMs: 120_000,
  format: short,
});

function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = text;
}

/**
 * Keeps the token this tab uses (the page's client holds it too), or forgets it.
 * @param {string | undefined} value
 */
function keepToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage may be off: the token then lasts as long as the page.
  }
}

/** @returns {string | undefined} */
function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Shows the token form, with `why` (a refusal) under it, and resolves with the next
 * token entered.
 * @param {string} why
 * @returns {Promise<string>}
 */
function askToken(why) {
  const card = $('token-card');
  const form = /** @type {HTMLFormElement} */ ($('token-form'));
  const input = /** @type {HTMLInputElement} */ ($('token-input'));
  const submit = /** @type {HTMLButtonElement} */ ($('token-submit'));
  card.hidden = false;
  $('token-error').textContent = why;
  submit.disabled = false;
  input.disabled = false;
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      form.onsubmit = (e) => e.preventDefault();
      submit.disabled = true;
      $('token-error').textContent = 'checking…';
      resolve(value);
    };
  });
}

/** Connects to the node that served the page, asking for a token while it refuses. */
async function connectNode() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;
  let candidate = storedToken();
  for (;;) {
    try {
      const db = await connect(url, { timeoutMs: 5000, token: candidate });
      keepToken(candidate);
      $('token-card').hidden = true;
      /** @type {HTMLInputElement} */ ($('token-input')).value = '';
      return db;
    } catch (e) {
      const err = /** @type {import('/dashboard/dhrt/src/index.js').DhrtError} */ (e);
      if (err.code === 'unauthorized') {
        keepToken(undefined);
        setConn('lost', 'this node requires a token');
        candidate = await askToken(candidate ? `that token was refused: ${err.message}` : '');
        continue;
      }
      setConn('lost', `cannot reach ${location.host}: retrying`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

async function start() {
  $('served-by').textContent = `served by ${location.host}`;
  const db = await connectNode();
  // For the browser test and for poking around in the console.
  Object.assign(window, { db });
  setConn('live', 'live');
  const keys = new KeyBrowser(db, (m) => {
    marker = m;
    render();
  });
  browser = keys;
  $('collections-table').querySelector('tbody')?.addEventListener('click', (ev) => {
    const tr = /** @type {HTMLElement} */ (ev.target).closest('tr');
    if (tr?.dataset.collection === undefined) return;
    keys.show(tr.dataset.collection);
    render();
  });
  await loadCollections(db);
  const input = /** @type {HTMLInputElement} */ ($('collection'));
  const names = collections.map((c) => c.name);
  if (input.value === 'default' && names.length && !names.includes('default')) input.value = names[0];
  keys.open();
  for (;;) {
    const began = Date.now();
    await poll(db);
    render();
    await new Promise((r) => setTimeout(r, Math.max(100, POLL_MS - (Date.now() - began))));
  }
}

/**
 * The collections, their settings and sizes (the collections table and the key
 * browser's list). On failure the last list stays, and the table says why.
 */
async function loadCollections(db) {
  try {
    const listed = await withTimeout(db.collections(), 1500);
    collections = listed.filter((c) => !c.name.startsWith(RESERVED_PREFIX));
    collectionsError = undefined;
  } catch (e) {
    collectionsError = /** @type {Error} */ (e).message;
  }
  browser?.setCollections(collections.map((c) => c.name));
}

/** One round: the ring, then every member's stats and the collections, side by side. */
async function poll(db) {
  const listing = loadCollections(db);
  try {
    members = await db.ring();
    replicas = db.ringView().replicas;
    setConn('live', 'live');
  } catch (e) {
    const err = /** @type {import('/dashboard/dhrt/src/index.js').DhrtError} */ (e);
    if (err.code === 'unauthorized') {
      // The token was revoked: start over, asking for another.
      keepToken(undefined);
      location.reload();
    }
    setConn('lost', `ring unavailable: ${err.message}`);
    await listing;
    return;
  }
  const now = Date.now();
  const addrs = new Set(members.map((m) => m.addr));
  for (const addr of nodes.keys()) if (!addrs.has(addr)) nodes.delete(addr);
  await Promise.all(
    members.map(async (m) => {
      const n = nodes.get(m.addr) ?? {};
      nodes.set(m.addr, n);
      if (m.status === 'left' || m.status === 'dead') {
        n.stats = undefined;
        n.ops = undefined;
        n.prev = undefined;
        return;
      }
      try {
        const stats = await withTimeout(db.stats(m.addr), 1500);
        if (n.prev && now > n.prev.at) n.ops = Math.max(0, ((stats.requests - n.prev.requests) * 1000) / (now - n.prev.at));
        n.prev = { at: now, requests: stats.requests };
        n.stats = stats;
        n.error = undefined;
      } catch (e) {
        n.error = /** @type {Error} */ (e).message;
        n.ops = undefined;
      }
    }),
  );
  const colour = colours(members.map((m) => m.id));
  for (const m of members) {
    const n = nodes.get(m.addr);
    if (!n?.stats) continue;
    opsChart.push(m.addr, m.addr, colour.get(m.id) ?? '#888', now, n.ops ?? 0);
    keysChart.push(m.addr, m.addr, colour.get(m.id) ?? '#888', now, n.stats.keys);
  }
  opsChart.keep(addrs);
  keysChart.keep(addrs);
  await listing;
}

/** @template T @param {Promise<T>} p @param {number} ms @returns {Promise<T>} */
function withTimeout(p, ms) {
  return Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error('no answer in time')), ms))]);
}

function render() {
  const colour = colours(members.map((m) => m.id));
  const views = members.map((m) => ({ member: m, colour: colour.get(m.id) ?? '#888', ...nodes.get(m.addr) }));
  renderNodes(/** @type {HTMLTableSectionElement} */ ($('nodes').querySelector('tbody')), views);
  renderSync($('sync'), views);
  renderCollections(/** @type {HTMLTableSectionElement} */ ($('collections-table').querySelector('tbody')), collections, browser?.collection, replicas);
  $('collections-note').textContent = collectionsError
    ? `list unavailable: ${collectionsError}`
    : `${collections.length === 1 ? '1 collection' : `${collections.length} collections`}: settings, layout and size, every second; click one to browse it`;
  drawRing(/** @type {SVGSVGElement} */ (/** @type {unknown} */ ($('ring'))), members, colour, marker);
  const legend = members
    .map((m) => `<li><span class="swatch" style="background:${colour.get(m.id)}"></span>${esc(m.addr)} · ${(m.share * 100).toFixed(1)}%</li>`)
    .join('');
  setHtml($('legend'), legend);
  const healthy = members.filter((m) => m.status === 'alive').length;
  $('sum-healthy').textContent = `${healthy} / ${members.length}`;
  $('sum-replicas').textContent = String(replicas);
  const keys = views.reduce((s, v) => s + (v.stats?.keys ?? 0), 0);
  $('sum-keys').textContent = short(keys);
  $('sum-ops').textContent = short(views.reduce((s, v) => s + (v.ops ?? 0), 0));
  $('ring-note').textContent = marker ? `key ${marker.label}: replicas highlighted` : `${members.length} nodes, ${members.reduce((s, m) => s + m.tokens.length, 0)} vnodes`;
  opsChart.draw();
  keysChart.draw();
}

start();
