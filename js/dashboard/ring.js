/**
 * The ring, drawn in SVG: every token of every serving node as an arc of the node's
 * colour over the interval it owns (Chord's successor rule: a token owns the positions
 * after the previous token, up to itself), tokens of members that do not serve as grey
 * ticks, and the selected key as a marker at its position.
 * @module
 */

const SVG = 'http://www.w3.org/2000/svg';
const TWO64 = 2 ** 64;
const INNER = 84;
const OUTER = 108;

/** What each SVG element shows now, to skip redrawing the same ring. */
const drawn = new WeakMap();

/** Ten colours that stay apart on a dark background. */
export const PALETTE = ['#38bdf8', '#f472b6', '#a3e635', '#fb923c', '#c084fc', '#2dd4bf', '#facc15', '#f87171', '#818cf8', '#4ade80'];

/**
 * A stable colour per node, by its id.
 * @param {string[]} ids every member's id
 */
export function colours(ids) {
  const sorted = [...ids].sort();
  return new Map(sorted.map((id, i) => [id, PALETTE[i % PALETTE.length]]));
}

/** @param {number} frac a fraction of the ring */
function point(frac, r) {
  const a = frac * 2 * Math.PI - Math.PI / 2;
  return [r * Math.cos(a), r * Math.sin(a)];
}

/** The annulus sector from `from` to `to` (fractions of the ring, clockwise). */
function sector(from, to) {
  let span = to - from;
  if (span <= 0) span += 1;
  if (span >= 0.99999) span = 0.99999;
  const large = span > 0.5 ? 1 : 0;
  const [x1, y1] = point(from, OUTER);
  const [x2, y2] = point(from + span, OUTER);
  const [x3, y3] = point(from + span, INNER);
  const [x4, y4] = point(from, INNER);
  const f = (/** @type {number} */ n) => n.toFixed(2);
  return `M${f(x1)},${f(y1)}A${OUTER},${OUTER} 0 ${large} 1 ${f(x2)},${f(y2)}L${f(x3)},${f(y3)}A${INNER},${INNER} 0 ${large} 0 ${f(x4)},${f(y4)}Z`;
}

/** @param {string} tag @param {Record<string, string | number>} attrs */
function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * Redraws the ring.
 * @param {SVGSVGElement} svg
 * @param {import('/dashboard/dhrt/src/index.js').Member[]} members
 * @param {Map<string, string>} colour node id → colour
 * @param {{position?: bigint, label?: string, replicas?: string[]} | null} marker
 */
export function drawRing(svg, members, colour, marker) {
  // Redraw only when something drawn changed: hundreds of paths are not free to lay out.
  const key = JSON.stringify([members.map((m) => [m.id, m.status, m.tokens.length, m.tokens[0]]), [...colour], marker?.label, marker?.replicas, String(marker?.position)]);
  if (drawn.get(svg) === key) return;
  drawn.set(svg, key);
  const parts = [];
  const serving = [];
  for (const m of members) {
    for (const t of m.tokens) {
      const frac = Number(BigInt(t)) / TWO64;
      if (m.status === 'alive') serving.push({ frac, id: m.id });
      else parts.push(tick(frac));
    }
  }
  serving.sort((a, b) => a.frac - b.frac);
  const replicaSet = new Set(marker?.replicas ?? []);
  const byAddr = new Map(members.map((m) => [m.id, m.addr]));
  serving.forEach((v, i) => {
    const prev = serving[(i + serving.length - 1) % serving.length].frac;
    const dim = marker?.replicas && !replicaSet.has(byAddr.get(v.id) ?? '');
    const path = el('path', { d: serving.length === 1 ? sector(0, 0.99999) : sector(prev, v.frac), fill: colour.get(v.id) ?? '#888', class: dim ? 'vnode down' : 'vnode' });
    path.appendChild(el('title', {}, `${byAddr.get(v.id)} · token ${(v.frac * 100).toFixed(2)}%`));
    parts.push(path);
  });
  for (const q of [0, 0.25, 0.5, 0.75]) {
    const [x, y] = point(q, OUTER + 12);
    parts.push(el('text', { x: x.toFixed(1), y: (y + 3).toFixed(1) }, `${q * 100}%`));
  }
  const alive = members.filter((m) => m.status === 'alive').length;
  parts.push(el('text', { x: 0, y: -4, class: 'center' }, `${alive} / ${members.length}`));
  parts.push(el('text', { x: 0, y: 10 }, 'nodes serving'));
  if (marker?.position !== undefined) {
    const frac = Number(marker.position) / TWO64;
    const [x1, y1] = point(frac, 30);
    const [x2, y2] = point(frac, OUTER + 4);
    parts.push(el('line', { x1, y1, x2, y2, class: 'marker-line' }));
    const dot = el('circle', { cx: x2.toFixed(2), cy: y2.toFixed(2), r: 4, class: 'marker' });
    dot.appendChild(el('title', {}, marker.label ?? 'key'));
    parts.push(dot);
  }
  svg.replaceChildren(...parts);
}

/** A grey tick for a token of a member that does not serve. */
function tick(frac) {
  const [x1, y1] = point(frac, OUTER + 1);
  const [x2, y2] = point(frac, OUTER + 6);
  return el('line', { x1, y1, x2, y2, class: 'tick' });
}
