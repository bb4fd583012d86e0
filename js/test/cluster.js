/**
 * Real `dhrt` node processes on 127.0.0.1 for the package's tests: in memory, on
 * ephemeral ports, killed when the test ends (and when this process exits).
 * @module
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The `dhrt` binary: $DHRT_BIN, else the workspace's debug build. */
export const DHRT_BIN =
  process.env.DHRT_BIN ?? fileURLToPath(new URL('../../target/debug/dhrt', import.meta.url));

const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * Starts `dhrt serve --memory --port 0 ...args` (without `--memory` when `args` name a
 * `--data-dir`) and resolves with its address once it says it listens.
 * @param {string[]} args
 * @returns {Promise<{addr: string, proc: import('node:child_process').ChildProcess, kill: () => void, log: () => string}>}
 */
export function startNode(args = []) {
  if (!existsSync(DHRT_BIN)) {
    throw new Error(`${DHRT_BIN} is missing: build it with 'cargo build -p dhrt' (or set DHRT_BIN)`);
  }
  const storage = args.includes('--data-dir') ? [] : ['--memory'];
  const proc = spawn(DHRT_BIN, ['serve', ...storage, '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DHRT_LOG: process.env.DHRT_TEST_LOG ?? 'warn' },
  });
  running.add(proc);
  let log = '';
  proc.stderr.on('data', (d) => (log += d));
  proc.on('exit', () => running.delete(proc));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dhrt serve did not start:\n${log}`)), 30_000);
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = / listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          addr: m[1],
          proc,
          kill: () => proc.kill('SIGKILL'),
          log: () => log,
        });
      }
    });
    proc.on('exit', (code) => reject(new Error(`dhrt serve exited (${code}):\n${log}`)));
  });
}

/**
 * Polls `check` every 100 ms until it is truthy or `ms` pass.
 * @template T
 * @param {() => Promise<T> | T} check
 * @param {number} ms
 * @param {string} what
 * @returns {Promise<T>}
 */
export async function waitFor(check, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
}

/**
 * A cluster of `n` nodes joined through the first, once every node sees `n` alive.
 * `args` go to every node; `token` is presented to read their stats (for nodes started
 * with `--admin-token-file`).
 * @param {number} n
 * @param {{args?: string[], token?: string}} [opts]
 */
export async function startCluster(n, { args = [], token } = {}) {
  const first = await startNode(args);
  const nodes = [first];
  for (let i = 1; i < n; i++) nodes.push(await startNode([...args, '--join', first.addr]));
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  await waitFor(
    async () => {
      for (const node of nodes) {
        const stats = await (await fetch(`http://${node.addr}/v1/stats`, { headers })).json();
        if (stats.members?.alive !== n) return false;
      }
      return true;
    },
    60_000,
    `${n} nodes to see each other alive`,
  );
  return {
    nodes,
    stop: () => nodes.forEach((node) => node.kill()),
  };
}
