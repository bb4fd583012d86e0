/**
 * Helpers for the browser tests: headless Chromium with the flags this machine needs,
 * and a tiny web server standing for another site.
 * @module
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** The Chromium binary: $CHROMIUM, else the system's. */
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/**
 * Chromium's own background connections (updates, sync, lookups of Google's hosts) are
 * refused many at a time on a closed network without these.
 */
export const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Headless Chromium on a fresh profile; `close()` ends it and removes the profile.
 * @returns {Promise<{context: import('playwright-core').BrowserContext, close: () => Promise<void>}>}
 */
export async function launchChromium() {
  const profile = mkdtempSync(join(tmpdir(), 'dhrt-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    timeout: 60_000,
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Serves `html` at `/` (and nothing else) on 127.0.0.1, port 0: a page of another
 * origin than any node's.
 * @param {string} html
 * @returns {Promise<{port: number, close: () => Promise<void>}>}
 */
export function servePage(html) {
  const server = createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: /** @type {import('node:net').AddressInfo} */ (server.address()).port,
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}
