/* tslint:disable */
/* eslint-disable */

/**
 * The light peer. See the module docs for how a host drives it.
 */
export class Peer {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * As [`Peer::call`], to the node at `addr` only.
     */
    callAt(now: number, addr: string, op: any): number;
    /**
     * Sends a request (`{op: "get", collection, key, consistency}`, see the package
     * types), routed to a replica of its key; returns the handle its `reply` output
     * will carry. Throws on a malformed request.
     */
    call(now: number, op: any): number;
    /**
     * The connection to `addr` opened.
     */
    connected(addr: string): void;
    /**
     * The live value of `key` in copy `handle`, if any.
     */
    copyGet(handle: number, now: number, key: Uint8Array | number[]): Uint8Array | undefined;
    /**
     * What copy `handle` holds and has done (`rootDigest` is a `BigInt`); `undefined`
     * when it is not open.
     */
    copyInfo(handle: number): any;
    /**
     * A page of copy `handle`: `{items: [[key, value]], cursor}`; pass `cursor` back for
     * the next page (absent at the end). Throws when the copy is not open.
     */
    copyScan(handle: number, now: number, cursor: Uint8Array | number[] | null | undefined, limit: number): any;
    /**
     * The connection to `addr` failed or closed.
     */
    disconnected(now: number, addr: string): void;
    /**
     * A frame the node at `addr` sent.
     */
    handleFrame(now: number, addr: string, frame: Uint8Array | number[]): void;
    /**
     * A peer that reads the ring through `seeds` (`"host:port"` each). `options`:
     * `{replicas, attemptTimeoutMs, ringRefreshMs, downMs, syncParallel, retryMs, seed,
     * token}`; with a `token`, the first frame sent on every connection presents it
     * (`Auth`).
     */
    constructor(seeds: string[], options: any);
    /**
     * When to call `tick` next (`Date.now()` milliseconds), if ever.
     */
    nextDeadline(): number | undefined;
    /**
     * Opens a local copy of `collection`; with `notify`, each change applied to it is
     * a `change` output. Returns its handle.
     */
    openCopy(now: number, collection: string, notify: boolean): number;
    /**
     * Every output waiting, in order: `{type: "send" | "reply" | "change" | "status" |
     * "ringChanged" | "unreachable" | "refused", ...}`.
     */
    pollOutputs(): Array<any>;
    /**
     * The ring as last read: `{members: [{id, addr, status, tokens, share, joining,
     * leaving}], replicas}`.
     */
    ring(): any;
    /**
     * The nodes a request for `key` of `collection` goes to, in order.
     */
    route(collection: string, key: Uint8Array | number[]): string[];
    /**
     * Reads the ring through the seeds: a `ringChanged` or `unreachable` output follows.
     */
    start(now: number): void;
    /**
     * Runs the timers.
     */
    tick(now: number): void;
    /**
     * Ends a watch or a copy; false when `handle` names neither.
     */
    unsubscribe(now: number, handle: number): boolean;
    /**
     * Watches `collection` (keys starting with `prefix`, if given); returns the handle
     * of its `change` and `status` outputs.
     */
    watch(now: number, collection: string, prefix?: Uint8Array | number[] | null): number;
}

/**
 * Decodes a response frame into `{id, reply}` (the `reply` shape of `Peer` outputs).
 * Throws an `Error` saying what is wrong when the bytes are not a response frame.
 */
export function decodeResponse(frame: Uint8Array | number[]): any;

/**
 * Encodes a request (`{op: "get", ...}`, as `Peer.call` takes it) with id `id` as a
 * wire frame. Throws when the request is malformed.
 */
export function encodeRequest(id: number, op: any): Uint8Array;

/**
 * The ring position of `key` in a hashed collection (the default placement):
 * xxh3-64 of the key, seeded with xxh3-64 of the collection name. Returns a `BigInt`.
 */
export function hashedPosition(collection: string, key: Uint8Array | number[]): bigint;

/**
 * The ring position of `key` in an ordered collection: its first 8 bytes read
 * big-endian, zero-padded on the right, so ring order is key order. Returns a `BigInt`.
 */
export function orderedPosition(key: Uint8Array | number[]): bigint;

/**
 * The dhrt version this module was built from, such as `"0.1.0"`.
 */
export function version(): string;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_peer_free: (a: number, b: number) => void;
    readonly decodeResponse: (a: number, b: number) => [number, number, number];
    readonly encodeRequest: (a: number, b: number) => [number, number, number, number];
    readonly hashedPosition: (a: number, b: number, c: number, d: number) => bigint;
    readonly orderedPosition: (a: number, b: number) => bigint;
    readonly peer_call: (a: number, b: number, c: number) => [number, number, number];
    readonly peer_callAt: (a: number, b: number, c: number, d: number, e: number) => [number, number, number];
    readonly peer_connected: (a: number, b: number, c: number) => void;
    readonly peer_copyGet: (a: number, b: number, c: number, d: number, e: number) => [number, number];
    readonly peer_copyInfo: (a: number, b: number) => number;
    readonly peer_copyScan: (a: number, b: number, c: number, d: number, e: number, f: number) => [number, number, number];
    readonly peer_disconnected: (a: number, b: number, c: number, d: number) => void;
    readonly peer_handleFrame: (a: number, b: number, c: number, d: number, e: number, f: number) => void;
    readonly peer_new: (a: number, b: number, c: number) => [number, number, number];
    readonly peer_nextDeadline: (a: number) => [number, number];
    readonly peer_openCopy: (a: number, b: number, c: number, d: number, e: number) => number;
    readonly peer_pollOutputs: (a: number) => number;
    readonly peer_ring: (a: number) => number;
    readonly peer_route: (a: number, b: number, c: number, d: number, e: number) => [number, number];
    readonly peer_start: (a: number, b: number) => void;
    readonly peer_tick: (a: number, b: number) => void;
    readonly peer_unsubscribe: (a: number, b: number, c: number) => number;
    readonly peer_watch: (a: number, b: number, c: number, d: number, e: number, f: number) => number;
    readonly version: () => [number, number];
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
