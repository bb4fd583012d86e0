/**
 * The nodes table, the anti-entropy panel and the collections table, rendered from the
 * dashboard's state.
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
  /** @param {{labels?: Record<string, string>}} m */
  const labelsOf = (m) => {
    const pairs = Object.entries(m.labels ?? {});
    return pairs.length === 0
      ? ''
      : `<span class="labels">${pairs.map(([k, v]) => `<span class="label">${esc(k)}=${esc(v)}</span>`).join('')}</span>`;
  };
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
        <td class="node"><span class="swatch" style="background:${colour}"></span> ${esc(m.addr)}<span class="id">${esc(m.id.slice(0, 6))}…</span>${labelsOf(m)}</td>
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

/**
 * Bytes for people: `512 B`, `1.5 KiB`, `20 MiB`, ...
 * @param {number} n
 */
export function size(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(Math.abs(n) >= 100 ? 0 : 1)} ${units[i]}`;
}

/**
 * A time to live for people: `500 ms`, `30 s`, `1.5 h`, `7 d`, ...
 * @param {number} ms
 */
export function duration(ms) {
  const steps = /** @type {Array<[number, string]>} */ ([[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'min'], [1000, 's']]);
  for (const [unit, name] of steps) {
    if (ms >= unit) {
      const v = ms / unit;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${name}`;
    }
  }
  return `${ms} ms`;
}

/**
 * A quota's cell: the quota and how much of it is used (`near` from 90%, `full` at 100%),
 * or `none`.
 * @param {number} used
 * @param {number | null} max
 * @param {(n: number) => string} format
 */
function quota(used, max, format) {
  if (max === null || max === undefined) return '<span class="muted">none</span>';
  const pct = max > 0 ? (used / max) * 100 : 100;
  const level = pct >= 100 ? 'full' : pct >= 90 ? 'near' : 'ok';
  // Rounded down below the quota, so that 99.6% does not read as full.
  const shown = pct < 100 ? Math.floor(pct) : Math.round(pct);
  return `${format(max)} <span class="use" data-level="${level}">${shown}%</span>`;
}

/**
 * A selector for people: `disk=ssd,rack=r1` (as `--select` takes it), or `any`.
 * @param {Record<string, string> | undefined} select
 */
export function selectorText(select) {
  const pairs = Object.entries(select ?? {});
  return pairs.length === 0 ? 'any' : pairs.map(([k, v]) => `${k}=${v}`).join(',');
}

/**
 * What a move under way says: `moving: copying → 5 on disk=ssd, spread by zone` (its
 * phase and the layout it moves to; a replication factor left to the cluster is
 * `clusterReplicas`, or `default` when unknown).
 * @param {import('/dashboard/dhrt/src/index.js').LayoutMove} m
 * @param {number} [clusterReplicas]
 */
export function moveText(m, clusterReplicas) {
  const n = m.to.replicas ?? clusterReplicas ?? 'default';
  const zones = m.to.zoneLabel === null || m.to.zoneLabel === undefined ? '' : `, spread by ${m.to.zoneLabel}`;
  return `moving: ${m.phase} → ${n} on ${selectorText(m.to.select)}${zones}`;
}

/**
 * The collections table: one row per collection (`db.collections()`), with its replicas
 * in use, placement, the nodes it may live on (its selector, or any) and the label its
 * replicas spread over (zones, or none), a move to another layout under way (its phase
 * and target), settings (a setting at the cluster's default shows as such) and size,
 * the one open in the key browser marked.
 * @param {HTMLTableSectionElement} tbody
 * @param {import('/dashboard/dhrt/src/index.js').CollectionInfo[]} collections
 * @param {string | undefined} open the key browser's collection
 * @param {number} [clusterReplicas] the cluster's replication factor, for a move to it
 */
export function renderCollections(tbody, collections, open, clusterReplicas) {
  const html = collections
    .map((c) => {
      const s = c.settings;
      const implicit = c.defined
        ? ''
        : '<span class="change" title="made by its first write: the cluster\'s defaults">no settings</span>';
      const consistency = s.consistency === null ? '<span class="muted">default</span>' : esc(s.consistency);
      const ttl = s.ttlMs === null ? '<span class="muted">none</span>' : esc(duration(s.ttlMs));
      // The layout in use (what the settings ask for, from a node without layouts).
      const current = c.layout?.current ?? s;
      const select = Object.keys(current.select ?? {}).length === 0
        ? '<span class="muted">any</span>'
        : esc(selectorText(current.select));
      const zones = current.zoneLabel === null || current.zoneLabel === undefined
        ? '<span class="muted">none</span>'
        : esc(current.zoneLabel);
      const m = c.layout?.moving;
      const move = m
        ? `<span class="change move" data-move="${esc(m.phase)}" title="its data moves to the layout its settings ask for, while it serves (announced → copying → joint → done)">${esc(moveText(m, clusterReplicas))}</span>`
        : '';
      return `<tr data-collection="${esc(c.name)}"${c.name === open ? ' class="selected"' : ''}>
        <td class="node">${esc(c.name)}${implicit}${move}</td>
        <td class="num">${esc(c.replicas)}</td>
        <td>${esc(c.placement)}</td>
        <td data-setting="select">${select}</td>
        <td data-setting="zones">${zones}</td>
        <td data-setting="consistency">${consistency}</td>
        <td data-setting="ttl">${ttl}</td>
        <td class="num" data-setting="keys">${short(c.keys)}</td>
        <td class="num" data-setting="max-keys">${quota(c.keys, s.maxKeys, short)}</td>
        <td class="num" data-setting="bytes">${esc(size(c.bytes))}</td>
        <td class="num" data-setting="max-bytes">${quota(c.bytes, s.maxBytes, size)}</td>
      </tr>`;
    })
    .join('');
  setHtml(tbody, html || '<tr><td colspan="11" class="muted">no collection yet: the first write makes one</td></tr>');
}
