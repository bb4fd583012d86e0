/**
 * The nodes table and the anti-entropy panel, rendered from the dashboard's state.
 * @module
 */

import { short } from './chart.js';

/** The HTML last set on each element by `setHtml`. */
const shown = new WeakMap();

/**
 * Sets `el`'s HTML, unless it is the same as last time (no needless layout).
 * @param {HTMLElement} el
 * @param {string} html
 */
export function setHtml(el, html) {
  if (shown.get(el) === html) return;
  el.innerHTML = html;
  shown.set(el, html);
}

/** @param {unknown} s */
export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** What a member's status is called on the page. */
export const HEALTH = { alive: 'healthy', suspect: 'suspect', dead: 'dead', left: 'left', syncing: 'syncing' };

/**
 * @typedef {{
 *   member: import('/dashboard/dhrt/src/index.js').Member,
 *   stats?: import('/dashboard/dhrt/src/index.js').NodeStats,
 *   ops?: number,
 *   error?: string,
 *   colour: string,
 * }} NodeView
 */

/**
 * @param {HTMLTableSectionElement} tbody
 * @param {NodeView[]} nodes
 */
export function renderNodes(tbody, nodes) {
  const maxKeys = Math.max(1, ...nodes.map((n) => n.stats?.keys ?? 0));
  const html = nodes
    .map(({ member: m, stats: s, ops, error, colour }) => {
      const keys = s ? s.keys : NaN;
      const width = s ? Math.max(2, Math.round((s.keys / maxKeys) * 60)) : 0;
      const unreachable = error && m.status === 'alive' ? `<span class="unreachable" title="${esc(error)}">unreachable</span>` : '';
      const storage =
        s && s.storage && s.storage !== 'ok'
          ? `<span class="storage" data-storage="${esc(s.storage)}" title="${esc(s.storageError ?? 'new data is refused: free space or add nodes')}">disk ${esc(s.storage)}</span>`
          : '';
      const change = m.joining
        ? '<span class="change" title="a pending replica: it copies the ranges it takes over">joining</span>'
        : m.leaving
          ? m.status === 'dead'
            ? '<span class="change" title="its other owners hand its ranges on (dhrt remove)">being removed</span>'
            : '<span class="change" title="it hands its ranges off, then leaves">leaving</span>'
          : '';
      return `<tr data-node="${esc(m.addr)}" data-status="${esc(m.status)}">
        <td class="node"><span class="swatch" style="background:${colour}"></span> ${esc(m.addr)}<span class="id">${esc(m.id.slice(0, 6))}…</span></td>
        <td><span class="badge" data-status="${esc(m.status)}">${esc(HEALTH[/** @type {keyof HEALTH} */ (m.status)] ?? m.status)}</span>${change}${unreachable}${storage}</td>
        <td class="num"><span class="bar" style="width:${width}px"></span>${short(keys)}</td>
        <td class="num">${ops === undefined ? '–' : short(ops)}</td>
        <td class="num">${(m.share * 100).toFixed(1)}%</td>
        <td class="num">${s ? short(s.tombstones) : '–'}</td>
        <td class="num">${s ? short(s.hintsPending) : '–'}</td>
      </tr>`;
    })
    .join('');
  setHtml(tbody, html);
}

/** @param {number | undefined} ms */
function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** @param {string} label @param {{done: number, total: number, entries: number} | undefined} p */
function progress(label, p) {
  if (!p) return '';
  const pct = p.total ? Math.round((p.done / p.total) * 100) : 0;
  return `<div>${label}: <b>${p.done}/${p.total}</b> sessions, ${short(p.entries)} entries
    <div class="progress"><div style="width:${pct}%"></div></div></div>`;
}

/**
 * @param {HTMLElement} box
 * @param {NodeView[]} nodes
 */
export function renderSync(box, nodes) {
  const html = nodes
    .filter((n) => n.stats)
    .map(({ member: m, stats: s, colour }) => {
      const y = /** @type {import('/dashboard/dhrt/src/index.js').NodeStats} */ (s).sync;
      return `<div class="row" data-sync="${esc(m.addr)}">
        <div class="addr"><span class="swatch" style="background:${colour}"></span> ${esc(m.addr)}</div>
        <div class="facts">
          sessions <b>${y.running}</b> running, <b>${short(y.completed)}</b> done, <b>${short(y.failed)}</b> failed ·
          <b>${short(y.entriesReceived)}</b> entries received · last full sync <b>${ago(y.lastFullSyncMs)}</b>
          ${progress('hand-off', y.handoff)}${progress('leaving', y.leaving)}
        </div>
      </div>`;
    })
    .join('');
  setHtml(box, html);
}
