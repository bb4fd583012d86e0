/**
 * A local copy of one collection, held in WebAssembly memory: caught up with the
 * cluster by Merkle sync, kept current by a watch, readable without the network.
 * @module
 */

import { fromBytes, toBytes, toEvent } from './bytes.js';
import { DhrtError } from './errors.js';

/** A collection's local copy. Open one with `client.replica(collection)`. */
export class Replica {
  /**
   * @param {import('./index.js').Client} client
   * @param {number} handle the peer's handle of the copy
   * @param {string} collection
   * @param {'utf8' | 'bytes'} encoding
   */
  constructor(client, handle, collection, encoding) {
    this._client = client;
    this._handle = handle;
    /** The collection copied. */
    this.collection = collection;
    this.encoding = encoding;
    /** @type {string} `syncing`, `synced`, `interrupted` or `closed` */
    this.state = 'syncing';
    /** @type {Set<(e: import('./index').ChangeEvent) => void>} */
    this._listeners = new Set();
    /** @type {Set<(s: any) => void>} */
    this._statusListeners = new Set();
    this._synced = { resolve: () => {}, reject: (/** @type {Error} */ _e) => {} };
  }

  /** What the client routes to this copy. */
  _sink() {
    return {
      change: (/** @type {any} */ c) => {
        if (this._listeners.size === 0) return;
        const event = toEvent(c, this.encoding);
        for (const l of this._listeners) l(event);
      },
      status: (/** @type {any} */ s) => {
        if (s.state === 'synced') {
          this.state = 'synced';
          this._synced.resolve();
        } else if (s.state === 'interrupted') {
          this.state = 'interrupted';
        } else if (s.state === 'syncing' && this.state !== 'synced') {
          this.state = 'syncing';
        } else if (s.state === 'ended') {
          // The peer dropped the copy already: forget it here too.
          this.state = 'closed';
          this._client._subs.delete(this._handle);
          this._synced.reject(new DhrtError(s.code, s.message));
        }
        for (const l of this._statusListeners) l(s);
      },
    };
  }

  /**
   * Resolves with this copy once its first catch-up finished.
   * @param {number} timeoutMs
   * @returns {Promise<Replica>}
   */
  _firstSync(timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.close();
        reject(new DhrtError('timeout', `the copy of ${this.collection} did not catch up within ${timeoutMs} ms`));
      }, timeoutMs);
      this._synced = {
        resolve: () => (clearTimeout(timer), resolve(this)),
        reject: (e) => (clearTimeout(timer), this.close(), reject(e)),
      };
    });
  }

  /**
   * The value of `key` in the copy (`null` when missing, deleted or expired).
   * @param {string | Uint8Array} key
   * @param {{encoding?: 'utf8' | 'bytes'}} [opts]
   */
  get(key, opts) {
    const v = this._client._peer.copyGet(this._handle, Date.now(), toBytes(key, 'key'));
    return fromBytes(v, opts?.encoding ?? this.encoding);
  }

  /**
   * A page of the copy in ring order: `{items: [[key, value]], cursor}`; pass `cursor`
   * back for the next page (`null` at the end).
   * @param {{cursor?: Uint8Array | null, limit?: number, encoding?: 'utf8' | 'bytes'}} [opts]
   */
  scan(opts = {}) {
    const page = this._client._peer.copyScan(this._handle, Date.now(), opts.cursor ?? undefined, opts.limit ?? 100);
    const enc = opts.encoding ?? this.encoding;
    return {
      items: page.items.map((/** @type {[Uint8Array, Uint8Array]} */ [k, v]) => [fromBytes(k, enc), fromBytes(v, enc)]),
      cursor: page.cursor ?? null,
    };
  }

  /** Every live entry of the copy, `[key, value]`. */
  *entries() {
    let cursor = null;
    do {
      const page = this.scan({ cursor, limit: 1000 });
      yield* page.items;
      cursor = page.cursor;
    } while (cursor);
  }

  /** Live entries held. */
  get size() {
    return this.info().entries;
  }

  /**
   * What the copy holds and has done: entries, sync rounds and sessions, events, and
   * its Merkle root (`rootCount`, `rootDigest`), equal to the cluster's for the same data.
   */
  info() {
    const info = this._client._peer.copyInfo(this._handle);
    if (!info) throw new DhrtError('not_found', `the copy of ${this.collection} is closed`);
    return info;
  }

  /**
   * Calls `listener` with every change applied to the copy; returns the function that
   * stops it.
   * @param {(e: import('./index').ChangeEvent) => void} listener
   */
  onChange(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /**
   * Calls `listener` with every state change (`live`, `interrupted`, `syncing`,
   * `synced`); returns the function that stops it.
   * @param {(s: any) => void} listener
   */
  onStatus(listener) {
    this._statusListeners.add(listener);
    return () => this._statusListeners.delete(listener);
  }

  /** Stops following the cluster and drops the copy. */
  close() {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this._client._subs.delete(this._handle);
    this._client._peer.unsubscribe(Date.now(), this._handle);
    this._client._pump();
  }
}
