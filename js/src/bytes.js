/**
 * Keys and values: what callers may pass (strings or bytes), and what they get back
 * (strings by default, bytes with `encoding: 'bytes'`).
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Bytes of a key or value: strings are UTF-8 encoded, byte arrays and buffers are used
 * as they are.
 * @param {string | Uint8Array | ArrayBuffer} value
 * @param {string} what what the value is, for the error message
 * @returns {Uint8Array}
 */
export function toBytes(value, what) {
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`${what} must be a string or a Uint8Array, not ${describe(value)}`);
}

/**
 * A value as the caller asked for it.
 * @param {Uint8Array | undefined | null} bytes
 * @param {'utf8' | 'bytes'} encoding
 * @returns {string | Uint8Array | null}
 */
export function fromBytes(bytes, encoding) {
  if (bytes === undefined || bytes === null) return null;
  return encoding === 'bytes' ? bytes : decoder.decode(bytes);
}

/**
 * A change as callbacks receive it, from the peer's change.
 * @param {any} c
 * @param {'utf8' | 'bytes'} enc
 * @returns {import('./index').ChangeEvent}
 */
export function toEvent(c, enc) {
  return {
    collection: c.collection,
    key: /** @type {any} */ (fromBytes(c.key, enc)),
    value: fromBytes(c.value, enc),
    deleted: c.value === undefined || c.value === null,
    ts: c.ts,
    origin: c.origin,
    expires: c.expires ?? null,
  };
}

/** @param {unknown} value */
function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? `a ${value.constructor?.name ?? 'object'}` : typeof value;
}
