/**
 * dhrt for browsers and Node: a light peer of the ring.
 *
 * `connect(url)` reads the ring from any node; from then on each single-key request
 * goes straight to a replica of its key (the same preference lists the nodes compute,
 * in WebAssembly from `dhrt-core`), and to the next replica when one fails. Watches
 * move to another node when theirs dies; `replica(collection)` keeps a local copy of
 * a collection, caught up by the Merkle sync protocol the nodes use and kept current
 * by a watch.
 *
 * ```js
 * import { connect } from 'dhrt';
 * const db = await connect('ws://127.0.0.1:7453');
 * await db.set('users', 'ada', 'lovelace');
 * console.log(await db.get('users', 'ada')); // 'lovelace'
 * const stop = db.watch('users', null, (e) => console.log(e.key, e.value));
 * ```
 *
 * The WebAssembly peer is sans-IO: this module owns the WebSockets (one per node) and
 * the timer, and moves frames between them and the peer. With `{token}`, the peer sends
 * it as the first message of every WebSocket it opens (never in a URL).
 *
 * ```js
 * const db = await connect('ws://10.0.0.1:7453', { token: process.env.DHRT_TOKEN });
 * ```
 * @module
 */

import { fromBytes, toBytes, toEvent } from './bytes.js';
import { DhrtError, fromReply } from './errors.js';
import { Replica } from './replica.js';
import { parseAddress, Sockets, webSocketClass, webSocketClassWithCa } from './socket.js';
import { loadWasm } from './wasm.js';

export { DhrtError } from './errors.js';
export { Replica } from './replica.js';

/**
 * Connects to the cluster through the node at `url` (`ws://host:port`, `host:port`,
 * `http://host:port`, or `wss://host:port` / `https://host:port` for a node with TLS)
 * and reads the ring. Rejects when the node cannot be reached (`unavailable`), and when
 * it requires a token and none was given or it refused the one given (`unauthorized`).
 * In Node, `options.ca` (PEM text) is the CA the nodes' certificates are verified
 * against.
 * @param {string} url
 * @param {import('./index').ConnectOptions} [options]
 * @returns {Promise<Client>}
 */
export async function connect(url, options = {}) {
  const parsed = parseAddress(url);
  const { addr } = parsed;
  // A CA means TLS, also for a bare `host:port`.
  const secure = parsed.secure || (!parsed.scheme && options.ca !== undefined);
  const sockets = options.ca !== undefined ? webSocketClassWithCa(options.ca) : webSocketClass();
  const [wasm, WS] = await Promise.all([loadWasm(), sockets]);
  const client = new Client(wasm, WS, addr, { ...options, secure });
  await client._start(options.timeoutMs ?? 10_000);
  return client;
}

/**
 * The ring position of `key` in `collection`, as the nodes compute it (BigInt).
 * @param {string} collection
 * @param {string | Uint8Array} key
 * @returns {Promise<bigint>}
 */
export async function position(collection, key) {
  const wasm = await loadWasm();
  const bytes = toBytes(key, 'key');
  return collection.startsWith('ordered.')
    ? wasm.orderedPosition(bytes)
    : wasm.hashedPosition(collection, bytes);
}

/** A connection to a dhrt cluster. Create it with {@link connect}. */
export class Client {
  /**
   * @param {any} wasm the loaded bindings
   * @param {typeof WebSocket} WS
   * @param {string} seed `host:port` of the first node
   * @param {import('./index').ConnectOptions & {secure: boolean}} options
   */
  constructor(wasm, WS, seed, options) {
    this._peer = new wasm.Peer([seed], {
      replicas: options.replicas,
      attemptTimeoutMs: options.attemptTimeoutMs,
      ringRefreshMs: options.ringRefreshMs,
      seed: Math.floor(Math.random() * 2 ** 52),
      token: options.token,
    });
    /** @type {'utf8' | 'bytes'} */
    this.encoding = options.encoding ?? 'utf8';
    /** @type {string | undefined} */
    this.consistency = options.consistency;
    /** @type {Map<number, {resolve: (r: any) => void, reject: (e: Error) => void}>} */
    this._pending = new Map();
    /** @type {Map<number, {change(c: any): void, status(s: any): void}>} */
    this._subs = new Map();
    this._timer = undefined;
    /** @type {number | undefined} the deadline the timer is set for */
    this._armedFor = undefined;
    this._closed = false;
    this._started = undefined;
    this._sockets = new Sockets(WS, { secure: options.secure }, {
      open: (addr) => {
        this._peer.connected(addr);
        this._pump();
      },
      frame: (addr, frame) => {
        this._peer.handleFrame(Date.now(), addr, frame);
        this._pump();
      },
      closed: (addr) => {
        if (this._closed) return;
        this._peer.disconnected(Date.now(), addr);
        this._pump();
      },
    });
  }

  /** @param {number} timeoutMs */
  _start(timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.close();
        reject(new DhrtError('timeout', `no node answered within ${timeoutMs} ms`));
      }, timeoutMs);
      this._started = {
        resolve: () => (clearTimeout(timer), resolve(undefined)),
        reject: (/** @type {Error} */ e) => (clearTimeout(timer), this.close(), reject(e)),
      };
      this._peer.start(Date.now());
      this._pump();
    });
  }

  /** Moves the peer's outputs to the sockets and the callers, then re-arms the timer. */
  _pump() {
    if (this._closed) return;
    for (const out of this._peer.pollOutputs()) {
      switch (out.type) {
        case 'send':
          this._sockets.send(out.addr, out.frame);
          break;
        case 'reply': {
          const p = this._pending.get(out.handle);
          if (!p) break;
          this._pending.delete(out.handle);
          if (out.reply.kind === 'error') p.reject(fromReply(out.reply));
          else p.resolve(out.reply);
          break;
        }
        case 'change':
          this._subs.get(out.handle)?.change(out.change);
          break;
        case 'status':
          this._subs.get(out.handle)?.status(out.status);
          break;
        case 'ringChanged':
          this._started?.resolve();
          this._started = undefined;
          break;
        case 'unreachable':
          this._started?.reject(new DhrtError('unavailable', out.message));
          this._started = undefined;
          break;
        case 'refused':
          this._started?.reject(new DhrtError(out.code, out.message));
          this._started = undefined;
          break;
      }
    }
    this._arm();
  }

  _arm() {
    const deadline = this._peer.nextDeadline();
    // Frames arrive far more often than deadlines move: keep a timer that is still right.
    if (this._timer !== undefined && deadline === this._armedFor) return;
    clearTimeout(this._timer);
    this._timer = undefined;
    this._armedFor = deadline;
    if (deadline === undefined || this._closed) return;
    const wait = Math.max(0, Math.min(deadline - Date.now(), 2 ** 31 - 1));
    this._timer = setTimeout(() => {
      this._timer = undefined;
      if (this._closed) return;
      this._peer.tick(Date.now());
      this._pump();
    }, wait);
    // In Node, the sockets (not the timer) keep the process alive.
    this._timer?.unref?.();
  }

  /**
   * Runs one request: `addr` pins it to one node.
   * @param {object} op a request as the wasm peer takes it
   * @param {string} [addr]
   * @returns {Promise<any>} the answer (`{kind, ...}`)
   */
  _call(op, addr) {
    if (this._closed) return Promise.reject(new DhrtError('unavailable', 'the client is closed'));
    let handle;
    try {
      handle = addr === undefined
        ? this._peer.call(Date.now(), op)
        : this._peer.callAt(Date.now(), addr, op);
    } catch (e) {
      return Promise.reject(new DhrtError('invalid_input', /** @type {Error} */ (e).message));
    }
    const answer = new Promise((resolve, reject) => this._pending.set(handle, { resolve, reject }));
    this._pump();
    return answer;
  }

  /** @param {{consistency?: string}} [opts] */
  _level(opts) {
    return opts?.consistency ?? this.consistency;
  }

  /** @param {{encoding?: 'utf8' | 'bytes'}} [opts] */
  _enc(opts) {
    return opts?.encoding ?? this.encoding;
  }

  /**
   * Reads `key`; `null` when it is missing, deleted or expired.
   * @param {string} collection
   * @param {string | Uint8Array} key
   * @param {import('./index').ReadOptions} [opts]
   */
  async get(collection, key, opts) {
    const op = { op: 'get', collection, key: toBytes(key, 'key'), consistency: this._level(opts) };
    const reply = await this._call(op);
    return fromBytes(reply.value, this._enc(opts));
  }

  /**
   * Reads several keys of one collection; one value (or `null`) per key, in order.
   * @param {string} collection
   * @param {Array<string | Uint8Array>} keys
   * @param {import('./index').ReadOptions} [opts]
   */
  async getMany(collection, keys, opts) {
    const op = {
      op: 'getMany',
      collection,
      keys: keys.map((k) => toBytes(k, 'key')),
      consistency: this._level(opts),
    };
    const reply = await this._call(op);
    return reply.values.map((/** @type {Uint8Array | undefined} */ v) => fromBytes(v, this._enc(opts)));
  }

  /**
   * Writes `key` = `value`; resolves to the write's timestamp once enough replicas
   * stored it.
   * @param {string} collection
   * @param {string | Uint8Array} key
   * @param {string | Uint8Array} value
   * @param {import('./index').WriteOptions} [opts]
   * @returns {Promise<bigint>}
   */
  async set(collection, key, value, opts) {
    const op = {
      op: 'set',
      collection,
      key: toBytes(key, 'key'),
      value: toBytes(value, 'value'),
      consistency: this._level(opts),
      ttlMs: opts?.ttlMs,
    };
    return (await this._call(op)).ts;
  }

  /**
   * Deletes `key` (a tombstone); also succeeds when it did not exist.
   * @param {string} collection
   * @param {string | Uint8Array} key
   * @param {import('./index').WriteOptions} [opts]
   * @returns {Promise<bigint>}
   */
  async del(collection, key, opts) {
    const op = { op: 'del', collection, key: toBytes(key, 'key'), consistency: this._level(opts) };
    return (await this._call(op)).ts;
  }

  /**
   * Writes many keys of one collection: `[key, value]` pairs (or an object or a Map);
   * a `null` value deletes its key. The values are written together with one
   * timestamp, the deletes alongside; it is not a transaction.
   * @param {string} collection
   * @param {Iterable<[string | Uint8Array, string | Uint8Array | null]> | Record<string, string | Uint8Array | null>} items
   * @param {import('./index').WriteOptions} [opts]
   * @returns {Promise<{written: number, deleted: number, ts: bigint | null}>}
   */
  async batch(collection, items, opts) {
    const pairs = isIterable(items) ? [...items] : Object.entries(items ?? {});
    const sets = [];
    const dels = [];
    for (const [k, v] of pairs) {
      if (v === null || v === undefined) dels.push(this.del(collection, k, opts));
      else sets.push([toBytes(k, 'key'), toBytes(v, 'value')]);
    }
    const written = sets.length
      ? this._call({
          op: 'setMany',
          collection,
          items: sets,
          consistency: this._level(opts),
          ttlMs: opts?.ttlMs,
        })
      : Promise.resolve(null);
    const [reply] = await Promise.all([written, ...dels]);
    return { written: sets.length, deleted: dels.length, ts: reply?.ts ?? null };
  }

  /**
   * One page of a scan, in ring order (key order for `ordered.*` collections). Pass
   * the page's `cursor` back for the next page; it is `null` at the end. A page may be
   * short, even empty, and still have a cursor.
   * @param {string} collection
   * @param {import('./index').ScanOptions} [opts]
   */
  async scan(collection, opts = {}) {
    const op = {
      op: 'scan',
      collection,
      cursor: opts.cursor ?? undefined,
      prefix: opts.prefix === undefined || opts.prefix === null ? undefined : toBytes(opts.prefix, 'prefix'),
      limit: opts.limit,
      consistency: this._level(opts),
    };
    const reply = await this._call(op);
    const enc = this._enc(opts);
    return {
      items: reply.items.map((/** @type {[Uint8Array, Uint8Array]} */ [k, v]) => [
        fromBytes(k, enc),
        fromBytes(v, enc),
      ]),
      cursor: reply.cursor ?? null,
    };
  }

  /**
   * Every live entry of a collection, page by page.
   * @param {string} collection
   * @param {import('./index').ScanOptions} [opts]
   */
  async *entries(collection, opts = {}) {
    let cursor = opts.cursor ?? null;
    do {
      const page = await this.scan(collection, { ...opts, cursor });
      yield* page.items;
      cursor = page.cursor;
    } while (cursor);
  }

  /**
   * Calls `onChange` with every change to `collection` (keys starting with `prefix`,
   * unless it is `null`). Returns the function that ends the watch; its `ready`
   * promise resolves once the watch is in place. When the node holding the watch dies,
   * the watch moves to another node (`onStatus` hears `interrupted`, then `live`).
   * @param {string} collection
   * @param {string | Uint8Array | null} prefix
   * @param {(event: import('./index').ChangeEvent) => void} onChange
   * @param {import('./index').WatchOptions} [opts]
   * @returns {import('./index').Unsubscribe}
   */
  watch(collection, prefix, onChange, opts = {}) {
    if (typeof onChange !== 'function') throw new TypeError('watch needs a callback');
    const p = prefix === null || prefix === undefined ? undefined : toBytes(prefix, 'prefix');
    const handle = this._peer.watch(Date.now(), collection, p);
    const enc = this._enc(opts);
    /** @type {(v?: any) => void} */
    let ready = () => {};
    /** @type {(e: Error) => void} */
    let failed = () => {};
    const readyPromise = new Promise((res, rej) => ((ready = res), (failed = rej)));
    readyPromise.catch(() => {});
    this._subs.set(handle, {
      change: (c) => onChange(toEvent(c, enc)),
      status: (s) => {
        if (s.state === 'live') ready();
        if (s.state === 'ended') {
          this._subs.delete(handle);
          failed(new DhrtError(s.code, s.message));
        }
        opts.onStatus?.(s);
      },
    });
    this._pump();
    const unsubscribe = () => {
      if (this._subs.delete(handle)) {
        this._peer.unsubscribe(Date.now(), handle);
        this._pump();
      }
    };
    unsubscribe.ready = readyPromise;
    return unsubscribe;
  }

  /**
   * A local copy of `collection`: resolves once it caught up with the cluster; from then
   * on it follows every change, and stays readable when no node can be reached.
   * @param {string} collection
   * @param {{encoding?: 'utf8' | 'bytes', timeoutMs?: number}} [opts]
   * @returns {Promise<Replica>}
   */
  replica(collection, opts = {}) {
    const handle = this._peer.openCopy(Date.now(), collection, true);
    const replica = new Replica(this, handle, collection, this._enc(opts));
    this._subs.set(handle, replica._sink());
    this._pump();
    return replica._firstSync(opts.timeoutMs ?? 60_000);
  }

  /**
   * Every member of the ring, as a node sees it now: `{id, addr, status, tokens,
   * share}` each (`share`: the fraction of the ring it owns as primary).
   * @returns {Promise<import('./index').Member[]>}
   */
  async ring() {
    return (await this._call({ op: 'ring' })).members;
  }

  /**
   * The ring as this client last read it (no request), with `replicas`.
   * @returns {{members: import('./index').Member[], replicas: number}}
   */
  ringView() {
    return this._peer.ring();
  }

  /**
   * The nodes a request for `key` goes to, in the order they are tried.
   * @param {string} collection
   * @param {string | Uint8Array} key
   * @returns {string[]}
   */
  route(collection, key) {
    return this._peer.route(collection, toBytes(key, 'key'));
  }

  /**
   * Counts and state of one node (`addr`, `host:port`), or of any node.
   * @param {string} [addr]
   * @returns {Promise<import('./index').NodeStats>}
   */
  async stats(addr) {
    return (await this._call({ op: 'stats' }, addr)).stats;
  }

  /**
   * Gives collection `name` its settings (an admin token, when the nodes require
   * tokens): `consistency` (the level of requests that name none), `ttlMs` (the time to
   * live of writes that give none), `maxKeys` and `maxBytes` (a quota: writes of new
   * data past it reject with `quota_exceeded`), and its layout: `replicas` (1 to 64),
   * `select` (the labels a node must carry to hold replicas, as `{disk: 'ssd'}`) and
   * `zoneLabel` (the node label whose values are zones the replicas spread over, as
   * `'zone'`). A setting left out or `null` (`{}` for `select`) is the cluster's
   * default. A layout other than the one in use moves the collection's data while it
   * serves: `layout.moving` shows the move until it is done. Rejects with `conflict`
   * when the collection has settings already (change them with
   * {@link Client#alterCollection}), `invalid_input` for a bad name or setting.
   * Resolves to the collection as {@link Client#collection} describes it.
   * @param {string} name
   * @param {import('./index').CollectionSettingsInput} [settings]
   * @returns {Promise<import('./index').CollectionInfo>}
   */
  async createCollection(name, settings = {}) {
    return (await this._call({ op: 'collectionCreate', collection: name, settings })).collection;
  }

  /**
   * Changes some settings of collection `name` (an admin token, when the nodes require
   * tokens): a setting given a value takes it, one given `null` returns to the
   * cluster's default, one left out stays as it is. A collection without settings
   * starts from the defaults (and has settings afterwards). A change of `replicas`,
   * `select` or `zoneLabel` starts a move of the collection's data, which serves
   * throughout: the answer's `layout.moving` shows it (a change asked for during a move
   * starts once that one is done).
   * @param {string} name
   * @param {import('./index').CollectionSettingsInput} changes
   * @returns {Promise<import('./index').CollectionInfo>}
   */
  async alterCollection(name, changes) {
    return (await this._call({ op: 'collectionAlter', collection: name, changes })).collection;
  }

  /**
   * Collection `name`: its settings (`null` each when at the cluster's default, `{}`
   * for `select`), its placement (`hashed`, or `ordered` for `ordered.*`), replicas per
   * key in use, its live keys and bytes across the cluster, estimated from the
   * answering node's copy, and its `layout`: `current` (`{replicas, select, zoneLabel}`,
   * the one in use, `replicas` `null` for the cluster's) and `moving` (`null`, or the
   * move under way to the layout the settings ask for: `{to, phase, startedMs}`, phase
   * `announced`, `copying` or `joint`). `null` when it has neither settings nor keys on
   * that node.
   * @param {string} name
   * @returns {Promise<import('./index').CollectionInfo | null>}
   */
  async collection(name) {
    try {
      return (await this._call({ op: 'collectionShow', collection: name })).collection;
    } catch (e) {
      if (e instanceof DhrtError && e.code === 'not_found') return null;
      throw e;
    }
  }

  /**
   * Every collection with settings or keys, by name (those the token covers, when the
   * nodes require tokens), described as by {@link Client#collection}.
   * @returns {Promise<import('./index').CollectionInfo[]>}
   */
  async collections() {
    return (await this._call({ op: 'collectionList' })).collections;
  }

  /**
   * Deletes every key of collection `name`, then its settings (an admin token, when the
   * nodes require tokens). Not atomic: keys written while it runs may survive it, and
   * running it again finishes the job (as after an error, whose message says how many
   * keys were deleted). Each delete is acknowledged at `opts.consistency`.
   * @param {string} name
   * @param {{consistency?: import('./index').Consistency}} [opts]
   * @returns {Promise<{deleted: number}>}
   */
  async dropCollection(name, opts) {
    const op = { op: 'collectionDrop', collection: name, consistency: this._level(opts) };
    return { deleted: (await this._call(op)).deleted };
  }

  /** Ends every watch and copy and closes every connection. */
  close() {
    if (this._closed) return;
    for (const handle of this._subs.keys()) this._peer.unsubscribe(Date.now(), handle);
    this._subs.clear();
    this._closed = true;
    clearTimeout(this._timer);
    this._sockets.closeAll();
    for (const p of this._pending.values()) p.reject(new DhrtError('unavailable', 'the client was closed'));
    this._pending.clear();
  }
}

/** @param {any} x */
function isIterable(x) {
  return x !== null && typeof x === 'object' && typeof x[Symbol.iterator] === 'function';
}
