// `npm pack` yields a tarball that installs and runs in a fresh folder: the published
// files are complete (JavaScript, types, the WebAssembly module) and `import 'dhrt'`
// works from Node against a real node.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { startNode } from './cluster.js';

const JS_DIR = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'dhrt-pack-'));
let node;

after(() => {
  node?.kill();
  rmSync(dir, { recursive: true, force: true });
});

const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] });

test('the packed package installs in a fresh folder and talks to a node', async () => {
  run('npm', ['pack', '--pack-destination', dir, '--silent'], JS_DIR);
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  assert.ok(tarball, 'npm pack wrote a tarball');
  const listing = run('tar', ['-tzf', join(dir, tarball)], dir);
  for (const f of ['src/index.js', 'src/index.d.ts', 'pkg/dhrt_wasm.js', 'pkg/dhrt_wasm_bg.wasm', 'README.md']) {
    assert.ok(listing.includes(`package/${f}`), `${f} is packed`);
  }
  assert.ok(!listing.includes('test/') && !listing.includes('dashboard/'), 'no tests or dashboard');

  const app = join(dir, 'app');
  run('mkdir', ['-p', app], dir);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', join(dir, tarball)], app);
  node = await startNode();
  writeFileSync(
    join(app, 'main.js'),
    `import { connect, position } from 'dhrt';
const db = await connect(process.argv[2]);
await db.set('users', 'ada', 'lovelace');
console.log(await db.get('users', 'ada'), typeof (await position('users', 'ada')));
db.close();
`,
  );
  const out = run('node', ['main.js', `ws://${node.addr}`], app);
  assert.equal(out.trim(), 'lovelace bigint');
});
