/**
 * One WebSocket per node, opened on first use. Frames to a node whose socket is still
 * opening wait for it; when a socket fails or closes, the owner hears of it once, so the
 * light peer can send what was waiting to another replica.
 * @module
 */

/** @type {Promise<typeof WebSocket> | undefined} */
let impl;

/**
 * The WebSocket class: the platform's (browsers, Node >= 22), else the `ws` package
 * (Node 20).
 * @returns {Promise<typeof WebSocket>}
 */
export function webSocketClass() {
  impl ??= globalThis.WebSocket
    ? Promise.resolve(globalThis.WebSocket)
    : import('ws').then((m) => m.WebSocket ?? m.default);
  return impl;
}

/**
 * The WebSocket class for Node with `ca` (PEM text, or several) trusted for `wss://`:
 * the `ws` package's, which takes Node's TLS options. Browsers verify `wss://` with
 * their own trust store and take no CA from a page.
 * @param {string | Uint8Array | Array<string | Uint8Array>} ca
 * @returns {Promise<typeof WebSocket>}
 */
export async function webSocketClassWithCa(ca) {
  if (typeof process === 'undefined' || !process.versions?.node) {
    throw new TypeError(
      'the ca option is for Node: a browser verifies wss:// with its own trust store (install the CA there)',
    );
  }
  const m = await import('ws');
  const WS = m.WebSocket ?? m.default;
  return /** @type {any} */ (
    class extends WS {
      /** @param {string} url */
      constructor(url) {
        super(url, { ca });
      }
    }
  );
}

/**
 * `ws://host:port/v1/ws` for a node address, with the scheme of the URL the client
 * connected with. Never a token: URLs end up in logs; the light peer presents the token
 * as the first message of every connection instead.
 * @param {string} addr `host:port`
 * @param {{secure: boolean}} how
 */
export function socketUrl(addr, how) {
  return `${how.secure ? 'wss' : 'ws'}://${addr}/v1/ws`;
}

/**
 * `host:port` and whether TLS is used, from what a user passes to `connect`:
 * `ws://h:p`, `wss://h:p/v1/ws`, `http://h:p`, `h:p` or `:p` (`scheme`: whether the
 * URL named one).
 * @param {string} url
 * @returns {{addr: string, secure: boolean, scheme: boolean}}
 */
export function parseAddress(url) {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new TypeError('connect needs a node address such as "ws://127.0.0.1:7453"');
  }
  const m = /^(wss?|https?):\/\/([^/?#]+)/i.exec(url.trim());
  if (m) return { addr: m[2], secure: /^(wss|https)$/i.test(m[1]), scheme: true };
  const bare = url.trim().split('/')[0];
  return { addr: bare.startsWith(':') ? `127.0.0.1${bare}` : bare, secure: false, scheme: false };
}

/** The sockets of one client, by node address. */
export class Sockets {
  /**
   * @param {typeof WebSocket} WS the WebSocket class
   * @param {{secure: boolean}} how
   * @param {{open(addr: string): void, frame(addr: string, data: Uint8Array): void, closed(addr: string): void}} events
   */
  constructor(WS, how, events) {
    this.WS = WS;
    this.how = how;
    this.events = events;
    /** @type {Map<string, {ws: WebSocket, queue: Uint8Array[] | null}>} */
    this.byAddr = new Map();
  }

  /**
   * Sends `frame` to `addr`, opening the socket first when there is none.
   * @param {string} addr
   * @param {Uint8Array} frame
   */
  send(addr, frame) {
    let entry = this.byAddr.get(addr);
    if (!entry) entry = this.open(addr);
    if (!entry) return;
    if (entry.queue) entry.queue.push(frame);
    else entry.ws.send(frame);
  }

  /** @param {string} addr */
  open(addr) {
    let ws;
    try {
      ws = new this.WS(socketUrl(addr, this.how));
    } catch {
      queueMicrotask(() => this.events.closed(addr));
      return undefined;
    }
    ws.binaryType = 'arraybuffer';
    const entry = { ws, queue: /** @type {Uint8Array[] | null} */ ([]) };
    this.byAddr.set(addr, entry);
    let gone = false;
    const lost = () => {
      if (gone) return;
      gone = true;
      if (this.byAddr.get(addr) === entry) this.byAddr.delete(addr);
      this.events.closed(addr);
    };
    ws.onopen = () => {
      const queue = entry.queue ?? [];
      entry.queue = null;
      for (const f of queue) ws.send(f);
      this.events.open(addr);
    };
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) this.events.frame(addr, new Uint8Array(ev.data));
    };
    ws.onerror = lost;
    ws.onclose = lost;
    return entry;
  }

  /** Addresses with a socket open or opening. */
  addrs() {
    return [...this.byAddr.keys()];
  }

  /** Closes every socket. */
  closeAll() {
    for (const { ws } of this.byAddr.values()) {
      ws.onclose = ws.onerror = ws.onmessage = ws.onopen = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
    this.byAddr.clear();
  }
}
