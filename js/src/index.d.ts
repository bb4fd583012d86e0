// Types of the npm package `dhrt`: a light peer of a dhrt cluster for browsers and Node.

/** `"default"`, `"one"`, `"quorum"`, `"all"` or a number of replicas such as `"2"`. */
export type Consistency = 'default' | 'one' | 'quorum' | 'all' | `${number}`;

/** How values (and keys in results) come back: strings (UTF-8) or bytes. */
export type Encoding = 'utf8' | 'bytes';

/** A key or a value as callers pass it: strings are UTF-8 encoded. */
export type Data = string | Uint8Array;

/** A key or value in a result: a string with the `utf8` encoding, bytes with `bytes`. */
export type Out = string | Uint8Array;

export interface ConnectOptions {
  /**
   * The token for nodes that require one (`dhrt token create` prints it): presented as
   * the first message of every WebSocket the client opens, never in a URL. Without it,
   * such a node refuses `connect` with `unauthorized`.
   */
  token?: string;
  /**
   * Node only: the CA certificate(s), PEM text (e.g. `readFileSync('ca.pem')`), that
   * `wss://` nodes' certificates are verified against instead of Node's default roots;
   * turns TLS on for a `host:port` address. Browsers use their own trust store and
   * refuse this option.
   */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** How results are decoded (default `utf8`). */
  encoding?: Encoding;
  /** The consistency of requests that name none (default: the node's, `quorum`). */
  consistency?: Consistency;
  /** How long `connect` waits for the first node (default 10 000 ms). */
  timeoutMs?: number;
  /** How long one node may take before a request goes to the next (default 5 000 ms). */
  attemptTimeoutMs?: number;
  /** How often the ring is re-read (default 10 000 ms). */
  ringRefreshMs?: number;
  /** Replicas per key until a node says (default 3). */
  replicas?: number;
}

export interface ReadOptions {
  consistency?: Consistency;
  encoding?: Encoding;
}

export interface WriteOptions {
  consistency?: Consistency;
  /** Time to live in milliseconds. */
  ttlMs?: number;
}

export interface ScanOptions extends ReadOptions {
  /** Only keys starting with these bytes. */
  prefix?: Data | null;
  /** Where to continue: the `cursor` of the previous page. */
  cursor?: Uint8Array | null;
  /** Most entries per page (the node may cap it; 0 or absent: its default). */
  limit?: number;
}

export interface Page {
  /** Live `[key, value]` pairs in ring order. */
  items: Array<[Out, Out]>;
  /** Pass back for the next page; `null` at the end. */
  cursor: Uint8Array | null;
}

/** A change delivered by a watch or applied to a local copy. */
export interface ChangeEvent {
  collection: string;
  key: Out;
  /** `null` when the key was deleted or expired. */
  value: Out | null;
  deleted: boolean;
  /** The write's hybrid-logical-clock timestamp. */
  ts: bigint;
  /** The id of the node that coordinated the write. */
  origin: string;
  /** When the value expires (wall-clock ms), if it has a TTL. */
  expires: number | null;
}

/** A watch's or local copy's state. */
export type StreamStatus =
  | { state: 'live' }
  | { state: 'interrupted'; reason: string }
  | { state: 'syncing'; done: number; total: number }
  | { state: 'synced'; entries: number }
  | { state: 'ended'; code: string; message: string };

export interface WatchOptions {
  encoding?: Encoding;
  /** Hears `live`, `interrupted` (the watch is moving to another node) and `ended`. */
  onStatus?: (status: StreamStatus) => void;
}

/** Ends a watch. `ready` resolves once the watch is in place. */
export interface Unsubscribe {
  (): void;
  ready: Promise<void>;
}

export interface Member {
  id: string;
  /** `host:port`. */
  addr: string;
  status: 'alive' | 'syncing' | 'suspect' | 'dead' | 'left' | string;
  /** Ring positions (decimal strings), ascending. */
  tokens: string[];
  /** The fraction of the ring it owns as primary: every owner has its share, down or
   * not (strict quorums keep a down member's ranges); 0 while joining or after leaving. */
  share: number;
  /** A pending replica: it receives writes for the ranges it takes over, owns nothing yet. */
  joining: boolean;
  /** It announced a graceful leave and hands its ranges off (a `dead` member that is
   * `leaving` is being removed by an operator: `dhrt remove`). */
  leaving: boolean;
  /** The labels the node was started with (`--label zone=eu-1`), key → value. */
  labels: Record<string, string>;
}

export interface Progress {
  done: number;
  total: number;
  entries: number;
}

export interface NodeStats {
  node: string;
  status: string;
  keys: number;
  tombstones: number;
  bytes: number;
  collections: number;
  /** Data requests received so far: its rate is the node's ops/s. */
  requests: number;
  replicas: number;
  members: { alive: number; syncing: number; suspect: number; dead: number; left: number };
  sync: {
    running: number;
    completed: number;
    failed: number;
    entriesReceived: number;
    cleaned: number;
    lastFullSyncMs?: number;
    handoff?: Progress;
    leaving?: Progress;
  };
  hintsPending: number;
  hintsDelivered: number;
  tombstonesPurged: number;
  expired: number;
  /** `ok`, `full` (new data refused; reads, deletes and drops still work) or `failing`. */
  storage: 'ok' | 'full' | 'failing';
  /** Bytes free on the node's data dir, when it knows. */
  storageFreeBytes?: number;
  /** The storage failure the node is recovering from, if any. */
  storageError?: string;
}

export interface CopyInfo {
  collection: string;
  entries: number;
  /** `[done, total]` pieces while a catch-up runs. */
  syncing?: [number, number];
  rounds: number;
  sessions: number;
  sessionsFailed: number;
  entriesSynced: number;
  events: number;
  rootCount: number;
  rootDigest: bigint;
}

/**
 * A collection's settings, as {@link Client.collection} describes them: `null` is the
 * cluster's default.
 */
export interface CollectionSettings {
  /** The level of requests that name none (`null`: the node's default, `quorum`). */
  consistency: Exclude<Consistency, 'default'> | null;
  /** The time to live of writes that give none, in milliseconds (`null`: no expiry). */
  ttlMs: number | null;
  /** Most live keys the collection may hold across the cluster (`null`: no quota). */
  maxKeys: number | null;
  /** Most bytes of keys and values it may hold across the cluster (`null`: no quota). */
  maxBytes: number | null;
  /**
   * Replicas of each key, 1 to 64 (`null`: the cluster's `--replicas`). A change moves
   * the collection's data while it serves ({@link CollectionInfo.layout}).
   */
  replicas: number | null;
  /**
   * The labels a node must carry (`--label disk=ssd`) to hold the collection's
   * replicas, as `{disk: 'ssd'}` (`{}`: any node). A change moves the data.
   */
  select: Record<string, string>;
  /**
   * The node label whose values are zones, as `'zone'`: each key's replicas go to
   * distinct zones while there are enough (`null`: no zones). A change moves the data.
   */
  zoneLabel: string | null;
}

/**
 * Settings to create a collection with, or to change: a setting given a value takes it,
 * `null` returns it to the cluster's default, and one left out is the default (create)
 * or stays as it is (alter). Any other field is refused (`invalid_input`).
 */
export type CollectionSettingsInput = Partial<CollectionSettings>;

/** Where a collection's replicas live: how many, on which nodes, over which zones. */
export interface Layout {
  /** Replicas of each key (`null`: the cluster's `--replicas`). */
  replicas: number | null;
  /** The labels a node must carry to hold replicas (`{}`: any node). */
  select: Record<string, string>;
  /** The node label whose values are zones the replicas spread over (`null`: none). */
  zoneLabel: string | null;
}

/**
 * A move of a collection to another layout, under way: `announced` (writes go to the
 * owners under both layouts), `copying` (the nodes gaining ranges pull them), `joint`
 * (reads need a quorum of both); done, the target becomes the current layout.
 */
export interface LayoutMove {
  /** The layout it moves to. */
  to: Layout;
  phase: 'announced' | 'copying' | 'joint';
  /** When it started (the driving node's clock, ms since the Unix epoch). */
  startedMs: number;
}

/** A collection's settings and size. */
export interface CollectionInfo {
  name: string;
  /** Whether it has settings (`false`: made by its first write, with the defaults). */
  defined: boolean;
  /** `hashed`, or `ordered` for `ordered.*` collections (ring order is key order). */
  placement: 'hashed' | 'ordered';
  /** Replicas per key, as the collection uses them now (`layout.current`). */
  replicas: number;
  /** Live keys across the cluster, estimated from the answering node's copy (exact
   * where every node keeps every key). */
  keys: number;
  /** Bytes of keys and values across the cluster, estimated the same way. */
  bytes: number;
  /** What the collection asks for; its layout settings may differ from `layout.current`
   * while a move is under way. */
  settings: CollectionSettings;
  /** The layout in use, and the move to the one the settings ask for, if any (`null`). */
  layout: { current: Layout; moving: LayoutMove | null };
}

/** An error answered by a node, or raised when no node answered. */
export class DhrtError extends Error {
  /**
   * `not_found`, `invalid_input`, `too_large`, `quorum_not_reached`, `timeout`, `unavailable`,
   * `storage_full` (replicas refused a write for lack of storage; reads and deletes still
   * work), `quota_exceeded` (the collection reached its `maxKeys` or `maxBytes`; deletes
   * still work), `conflict` (the write lost to a newer one and was not acknowledged, or
   * the collection has settings already), `unauthorized`, `forbidden`, ... A code this
   * package does not know arrives as `internal`.
   */
  code: string;
  /** `[answered, required]` replicas, when a consistency level was not reached. */
  acked?: [number, number];
}

/** A local copy of a collection, kept in sync. */
export class Replica {
  readonly collection: string;
  /** `syncing`, `synced`, `interrupted` or `closed`. */
  readonly state: string;
  readonly size: number;
  get(key: Data, opts?: { encoding?: Encoding }): Out | null;
  scan(opts?: { cursor?: Uint8Array | null; limit?: number; encoding?: Encoding }): Page;
  entries(): IterableIterator<[Out, Out]>;
  info(): CopyInfo;
  onChange(listener: (e: ChangeEvent) => void): () => void;
  onStatus(listener: (s: StreamStatus) => void): () => void;
  close(): void;
}

/** A connection to a dhrt cluster. */
export class Client {
  readonly encoding: Encoding;
  get(collection: string, key: Data, opts?: ReadOptions): Promise<Out | null>;
  getMany(collection: string, keys: Data[], opts?: ReadOptions): Promise<Array<Out | null>>;
  set(collection: string, key: Data, value: Data, opts?: WriteOptions): Promise<bigint>;
  del(collection: string, key: Data, opts?: WriteOptions): Promise<bigint>;
  batch(
    collection: string,
    items: Iterable<[Data, Data | null]> | Record<string, Data | null>,
    opts?: WriteOptions,
  ): Promise<{ written: number; deleted: number; ts: bigint | null }>;
  scan(collection: string, opts?: ScanOptions): Promise<Page>;
  entries(collection: string, opts?: ScanOptions): AsyncGenerator<[Out, Out]>;
  watch(
    collection: string,
    prefix: Data | null,
    onChange: (event: ChangeEvent) => void,
    opts?: WatchOptions,
  ): Unsubscribe;
  replica(collection: string, opts?: { encoding?: Encoding; timeoutMs?: number }): Promise<Replica>;
  ring(): Promise<Member[]>;
  ringView(): { members: Member[]; replicas: number };
  route(collection: string, key: Data): string[];
  stats(addr?: string): Promise<NodeStats>;
  /** Gives a collection its settings (admin); `conflict` when it has some already. */
  createCollection(name: string, settings?: CollectionSettingsInput): Promise<CollectionInfo>;
  /** Changes some settings (admin): `null` resets one to the default, absent keeps it. */
  alterCollection(name: string, changes: CollectionSettingsInput): Promise<CollectionInfo>;
  /** A collection's settings and size; `null` when it has neither settings nor keys. */
  collection(name: string): Promise<CollectionInfo | null>;
  /** Every collection with settings or keys, by name. */
  collections(): Promise<CollectionInfo[]>;
  /** Deletes every key of a collection, then its settings (admin). */
  dropCollection(name: string, opts?: { consistency?: Consistency }): Promise<{ deleted: number }>;
  close(): void;
}

/** Connects through the node at `url` (`ws://host:port`, `host:port`, `http://host:port`, `wss://host:port`). */
export function connect(url: string, options?: ConnectOptions): Promise<Client>;

/** The ring position of `key` in `collection`, as the nodes compute it. */
export function position(collection: string, key: Data): Promise<bigint>;
