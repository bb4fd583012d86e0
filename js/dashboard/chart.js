/**
 * A small line chart on a canvas: one series per node over a sliding window, redrawn
 * on demand, sharp on high-density screens. No library.
 * @module
 */

export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{windowMs: number, format: (v: number) => string}} opts
   */
  constructor(canvas, opts) {
    this.canvas = canvas;
    this.opts = opts;
    /** @type {Map<string, {colour: string, label: string, points: Array<[number, number]>}>} */
    this.series = new Map();
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /**
   * Adds a point to series `key`, dropping points older than the window.
   * @param {string} key
   * @param {string} label
   * @param {string} colour
   * @param {number} t time (ms)
   * @param {number} v value
   */
  push(key, label, colour, t, v) {
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { colour, label, points: [] }));
    s.colour = colour;
    s.label = label;
    s.points.push([t, v]);
    const cut = t - this.opts.windowMs;
    while (s.points.length && s.points[0][0] < cut) s.points.shift();
  }

  /** Forgets series not in `keys`. */
  keep(keys) {
    for (const k of this.series.keys()) if (!keys.has(k)) this.series.delete(k);
  }

  draw() {
    const { canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 52, r: 8, t: 8, b: 18 };
    const now = Date.now();
    const t0 = now - this.opts.windowMs;
    let max = 0;
    for (const s of this.series.values()) for (const [, v] of s.points) max = Math.max(max, v);
    // Four steps of a round size (at least 1: these are counts and rates of them).
    const step = Math.max(1, niceCeil(max / 4));
    max = step * 4;
    const x = (/** @type {number} */ t) => pad.l + ((t - t0) / this.opts.windowMs) * (w - pad.l - pad.r);
    const y = (/** @type {number} */ v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#8b9ab4';
    ctx.strokeStyle = '#1e293b';
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(w - pad.r, yy);
      ctx.stroke();
      ctx.textAlign = 'right';
      ctx.fillText(this.opts.format(v), pad.l - 6, yy + 4);
    }
    ctx.textAlign = 'left';
    ctx.fillText(`${Math.round(this.opts.windowMs / 1000)} s ago`, pad.l, h - 4);
    ctx.textAlign = 'right';
    ctx.fillText('now', w - pad.r, h - 4);
    ctx.lineWidth = 1.6;
    ctx.lineJoin = 'round';
    for (const s of this.series.values()) {
      if (s.points.length < 2) continue;
      ctx.strokeStyle = s.colour;
      ctx.beginPath();
      s.points.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
      ctx.stroke();
    }
  }
}

/** The next round number at or above `v` (1, 2, 5 × 10^k). */
function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * A count in a short form: 950, 12.3k, 1.05M.
 * @param {number} n
 */
export function short(n) {
  if (!Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(a >= 1e10 ? 1 : 2)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
