// Proves runCachedCommonJs: a bundle runs the same with or without V8's code cache, a start after save() uses it,
// and a cache for another source (even of the same length), a damaged one or an unwritable path never breaks a start.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { codeCacheFile, runCachedCommonJs } from '../../src/server/startup/code-cache.js';

const dir = mkdtempSync(join(tmpdir(), 'code-cache-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A CommonJS bundle that uses require (a file beside it and a built-in), __filename, __dirname and module.exports. */
function bundleSource(answer: number): string {
  return [
    'const own = require("./own.cjs");',
    'const path = require("node:path");',
    `exports.answer = () => own.base + ${answer};`,
    'exports.dir = __dirname;',
    'exports.base = path.basename(__filename);',
  ].join('\n');
}
writeFileSync(join(dir, 'own.cjs'), 'exports.base = 1000;');

describe('runCachedCommonJs', () => {
  const file = join(dir, 'bundle.cjs');
  const url = pathToFileURL(file);

  it('runs without a cache, saves one, and the next start uses it with the same results', async () => {
    writeFileSync(file, bundleSource(11));
    const first = runCachedCommonJs(url);
    assert.equal(first.cache, 'absent');
    assert.equal((first.exports.answer as () => number)(), 1011);
    assert.equal(first.exports.dir, dir);
    assert.equal(first.exports.base, 'bundle.cjs');
    assert.match(await first.save(), /^written to /);
    const second = runCachedCommonJs(url);
    assert.equal(second.cache, 'used');
    assert.equal((second.exports.answer as () => number)(), 1011);
    assert.equal(await second.save(), 'current');
  });

  it('ignores the cache of another source of the same length, and runs the new source', async () => {
    writeFileSync(file, bundleSource(22));
    const changed = runCachedCommonJs(url);
    assert.equal(changed.cache, 'stale: made for another source');
    assert.equal((changed.exports.answer as () => number)(), 1022);
    assert.match(await changed.save(), /^written to /);
    assert.equal(runCachedCommonJs(url).cache, 'used');
  });

  it('a damaged cache is caught by its checksum and the bundle still runs', () => {
    const cache = readFileSync(codeCacheFile(file));
    // Keep the header (hashes and maker) and garble V8's data after it: V8's release build would take it.
    for (let i = cache.length - 64; i < cache.length; i++) cache[i] ^= 0xff;
    writeFileSync(codeCacheFile(file), cache);
    const run = runCachedCommonJs(url);
    assert.equal(run.cache, 'damaged: its checksum does not match');
    assert.equal((run.exports.answer as () => number)(), 1022);
  });

  it('a cache that cannot be written is reported, not thrown', async () => {
    const other = join(dir, 'other.cjs');
    writeFileSync(other, bundleSource(33));
    // A directory where the cache file would go: the rename over it fails.
    mkdirSync(codeCacheFile(other));
    const run = runCachedCommonJs(pathToFileURL(other));
    assert.equal(run.cache, 'absent');
    assert.match(await run.save(), /^not written \(/);
    assert.equal((run.exports.answer as () => number)(), 1033);
  });
});
