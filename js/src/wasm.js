/**
 * Loads the WebAssembly light peer once: fetched next to this package in a browser, read
 * from disk in Node.
 * @module
 */

import init, * as bindings from '../pkg/dhrt_wasm.js';

/** @type {Promise<typeof bindings> | undefined} */
let loading;

/**
 * The wasm bindings, loaded on first use.
 * @returns {Promise<typeof bindings>}
 */
export function loadWasm() {
  loading ??= (async () => {
    const url = new URL('../pkg/dhrt_wasm_bg.wasm', import.meta.url);
    if (url.protocol === 'file:') {
      const { readFile } = await import('node:fs/promises');
      await init({ module_or_path: await readFile(url) });
    } else {
      await init({ module_or_path: url });
    }
    return bindings;
  })();
  return loading;
}
