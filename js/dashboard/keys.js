/**
 * The key browser: one page of a collection at a time (a scan with a cursor, so a
 * million keys cost no more than fifty), kept live by a watch — changed rows flash,
 * new keys appear at the top of the first page, and every change enters the live feed.
 * Rendering is batched to one pass per animation frame and the rows and the feed are
 * capped, so a flood of changes cannot stall the page. The collection is picked from
 * the cluster's collections (a list the dashboard refreshes) or typed.
 * @module
 */

import { position } from '/dashboard/dhrt/src/index.js';
import { esc, setHtml } from './nodes.js';

const PAGE = 50;
const MAX_NEW = 100;
const MAX_FEED = 100;
const SHOW = 160;
/** Least time between two renders while changes stream in (ms). */
const RENDER_EVERY = 250;

/** @param {string} v */
function clip(v) {
  return v.length > SHOW ? `${v.slice(0, SHOW)}…` : v;
}

export class KeyBrowser {
  /**
   * @param {import('/dashboard/dhrt/src/index.js').Client} db
   * @param {(m: {position: bigint, label: string, replicas: string[]} | null) => void} onSelect
   */
  constructor(db, onSelect) {
    this.db = db;
    this.onSelect = onSelect;
    const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
    this.el = {
      collection: /** @type {HTMLInputElement} */ ($('collection')),
      pick: /** @type {HTMLSelectElement} */ ($('collection-pick')),
      names: $('collections'),
      prefix: /** @type {HTMLInputElement} */ ($('prefix')),
      tbody: /** @type {HTMLTableSectionElement} */ ($('keys').querySelector('tbody')),
      feed: $('feed'),
      note: $('keys-note'),
      rate: $('feed-rate'),
      watch: $('watch-state'),
      first: /** @type {HTMLButtonElement} */ ($('first-page')),
      prev: /** @type {HTMLButtonElement} */ ($('prev-page')),
      next: /** @type {HTMLButtonElement} */ ($('next-page')),
    };
    /** @type {Map<string, {value: string | null, state: '' | 'fresh' | 'new' | 'deleted', replicas?: string}>} */
    this.rows = new Map();
    /** Keys that appeared while the first page is shown, oldest first. */
    this.added = /** @type {typeof this.rows} */ (new Map());
    /** @type {Array<{key: string, value: string | null, at: number}>} */
    this.feed = [];
    /** @type {Array<Uint8Array | null>} cursors of the pages before the current one */
    this.back = [];
    this.cursor = /** @type {Uint8Array | null} */ (null);
    this.nextCursor = /** @type {Uint8Array | null} */ (null);
    this.changes = 0;
    this.selected = /** @type {string | null} */ (null);
    this.stopWatch = () => {};
    this.dirty = false;
    this.generation = 0;
    this.pageNote = '';
    this.el.first.onclick = () => this.page(null, []);
    this.el.prev.onclick = () => this.page(this.back.at(-1) ?? null, this.back.slice(0, -1));
    this.el.next.onclick = () => this.nextCursor && this.page(this.nextCursor, [...this.back, this.cursor]);
    /** The collections listed, by name. @type {string[]} */
    this.names = [];
    const reopen = () => this.open();
    this.el.collection.onchange = reopen;
    this.el.prefix.onchange = reopen;
    this.el.pick.onchange = () => this.el.pick.value && this.show(this.el.pick.value);
    this.el.tbody.onclick = (ev) => {
      const tr = /** @type {HTMLElement} */ (ev.target).closest('tr');
      if (tr?.dataset.key !== undefined) this.select(tr.dataset.key);
    };
    setInterval(() => {
      this.el.rate.textContent = this.changes ? `${this.changes} in the last 5 s` : '';
      this.changes = 0;
    }, 5000);
  }

  /**
   * The collections to pick from (the list or the typed name's suggestions), by name.
   * @param {string[]} names
   */
  setCollections(names) {
    this.names = names;
    const options = names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join('');
    setHtml(this.el.pick, `<option value="">${names.length ? 'pick one…' : 'none listed'}</option>${options}`);
    setHtml(this.el.names, names.map((n) => `<option value="${esc(n)}">`).join(''));
    this.syncPick();
  }

  /** Shows the open collection in the list, or nothing when it is not listed. */
  syncPick() {
    const name = this.collection ?? this.el.collection.value.trim();
    const listed = this.names.includes(name) ? name : '';
    if (this.el.pick.value !== listed) this.el.pick.value = listed;
  }

  /**
   * Opens `collection` (picked from the list or the table).
   * @param {string} collection
   */
  show(collection) {
    this.el.collection.value = collection;
    return this.open();
  }

  /** (Re)opens the collection and prefix in the inputs: first page, new watch. */
  async open() {
    const collection = this.el.collection.value.trim() || 'default';
    const prefix = this.el.prefix.value;
    if (collection === this.collection && prefix === this.prefix) return;
    this.collection = collection;
    this.syncPick();
    this.stopWatch();
    this.feed = [];
    this.selected = null;
    this.onSelect(null);
    this.prefix = prefix;
    this.setWatch('off', 'subscribing…');
    try {
      const stop = this.db.watch(collection, prefix || null, (e) => this.change(e), {
        onStatus: (s) => this.setWatch(s.state, s.state === 'live' ? 'watching live' : s.state),
      });
      this.stopWatch = stop;
    } catch (e) {
      this.setWatch('off', /** @type {Error} */ (e).message);
    }
    await this.page(null, []);
  }

  /** @param {string} state @param {string} text */
  setWatch(state, text) {
    this.el.watch.dataset.state = state;
    this.el.watch.textContent = text;
  }

  /**
   * Loads the page at `cursor`.
   * @param {Uint8Array | null} cursor
   * @param {Array<Uint8Array | null>} back
   */
  async page(cursor, back) {
    const generation = ++this.generation;
    this.el.note.textContent = 'loading…';
    try {
      // A page may come back short (even empty) with a cursor: keep reading to fill it.
      const items = [];
      let next = cursor;
      let reads = 0;
      do {
        const page = await this.db.scan(/** @type {string} */ (this.collection), {
          cursor: next,
          prefix: this.prefix || null,
          limit: PAGE - items.length,
          consistency: 'one',
        });
        items.push(...page.items);
        next = page.cursor;
      } while (next && items.length < PAGE && ++reads < 20);
      if (generation !== this.generation) return;
      this.rows = new Map(items.map(([k, v]) => [String(k), { value: String(v), state: /** @type {''} */ ('') }]));
      this.added = new Map();
      this.cursor = cursor;
      this.back = back;
      this.nextCursor = next;
      this.pageNote = `page ${back.length + 1} · ${items.length} keys${next ? '' : ' · end'}`;
    } catch (e) {
      if (generation !== this.generation) return;
      this.rows = new Map();
      this.added = new Map();
      this.pageNote = /** @type {Error} */ (e).message;
    }
    this.schedule();
  }

  /** @param {import('/dashboard/dhrt/src/index.js').ChangeEvent} e */
  change(e) {
    const key = String(e.key);
    const value = e.deleted ? null : String(e.value);
    this.changes++;
    this.feed.unshift({ key, value, at: Date.now() });
    if (this.feed.length > MAX_FEED) this.feed.length = MAX_FEED;
    const row = this.rows.get(key) ?? this.added.get(key);
    if (row) {
      row.value = value;
      row.state = value === null ? 'deleted' : row.state === 'new' ? 'new' : 'fresh';
    } else if (this.back.length === 0 && value !== null) {
      // New keys show above the first page; the oldest of them drop off past MAX_NEW.
      this.added.set(key, { value, state: 'new' });
      if (this.added.size > MAX_NEW) this.added.delete(this.added.keys().next().value);
    }
    this.schedule();
  }

  /** @param {string} key */
  async select(key) {
    this.selected = key;
    const replicas = this.replicas(key);
    this.onSelect({ position: await position(/** @type {string} */ (this.collection), key), label: key, replicas });
    this.schedule();
  }

  /** The nodes holding `key`, owner first. */
  replicas(key) {
    const n = this.db.ringView().replicas;
    return this.db.route(/** @type {string} */ (this.collection), key).slice(0, n);
  }

  /** Renders on the next frame, at most once per RENDER_EVERY ms. */
  schedule() {
    if (this.dirty) return;
    this.dirty = true;
    const wait = Math.max(0, (this.renderedAt ?? 0) + RENDER_EVERY - performance.now());
    setTimeout(() => requestAnimationFrame(() => {
      this.dirty = false;
      this.renderedAt = performance.now();
      this.render();
    }), wait);
  }

  render() {
    const rows = [];
    let fresh = false;
    const added = [...this.added].reverse();
    for (const [key, r] of [...added, ...this.rows]) {
      const cls = [r.state, key === this.selected ? 'selected' : ''].filter(Boolean).join(' ');
      const badge = r.state === 'new' ? '<span class="new">new</span>' : '';
      const value = r.value === null ? 'deleted' : clip(r.value);
      r.replicas ??= esc(this.replicas(key).join(', '));
      rows.push(`<tr data-key="${esc(key)}" class="${cls}"><td>${esc(clip(key))}${badge}</td><td>${esc(value)}</td><td class="muted">${r.replicas}</td></tr>`);
      if (r.state === 'fresh') {
        // Highlighted until the next render, which comes within a second. (A CSS
        // animation per changed row would repaint every frame under a stream of changes.)
        r.state = '';
        fresh = true;
      }
    }
    if (fresh) setTimeout(() => this.schedule(), 1000);
    this.el.tbody.innerHTML = rows.join('');
    this.el.feed.innerHTML = this.feed
      .map((f) => {
        const t = new Date(f.at).toLocaleTimeString([], { hour12: false });
        const v = f.value === null ? '<span class="del">deleted</span>' : `<span class="v">${esc(clip(f.value))}</span>`;
        return `<li data-key="${esc(f.key)}"><time>${t}</time><span class="k">${esc(clip(f.key))}</span>${v}</li>`;
      })
      .join('');
    if (this.pageNote) {
      this.el.note.textContent = this.added.size ? `${this.pageNote} · ${this.added.size} new since` : this.pageNote;
    }
    this.el.first.disabled = this.back.length === 0;
    this.el.prev.disabled = this.back.length === 0;
    this.el.next.disabled = !this.nextCursor;
  }
}
