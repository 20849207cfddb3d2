// Atomic writes: a failed write leaves the previous file or directory exactly as it was, and no temp files behind.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { recoverInterruptedDirWrite, writeDirAtomic, writeFileAtomic } from '../../src/io/atomic.js';

const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-atomic-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  it('replaces the file and leaves no temp file', async () => {
    const dir = join(tmp, 'file');
    mkdirSync(dir);
    const file = join(dir, 'a.bin');
    writeFileSync(file, 'old');
    await writeFileAtomic(file, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...readFileSync(file)], [1, 2, 3]);
    assert.deepEqual(readdirSync(dir), ['a.bin']);
  });

  it('a write into a missing directory fails without creating anything', async () => {
    await assert.rejects(writeFileAtomic(join(tmp, 'nope', 'a.txt'), 'x'), /ENOENT/);
  });
});

describe('writeDirAtomic', () => {
  it('creates a new directory from the fill', async () => {
    const dir = join(tmp, 'fresh', 'model');
    await writeDirAtomic(dir, async (t) => writeFile(join(t, 'x.txt'), 'one'));
    assert.equal(readFileSync(join(dir, 'x.txt'), 'utf8'), 'one');
    assert.deepEqual(readdirSync(join(tmp, 'fresh')), ['model']);
  });

  it('swaps a complete new directory in: old files that are not rewritten disappear', async () => {
    const parent = join(tmp, 'swap');
    const dir = join(parent, 'model');
    await writeDirAtomic(dir, async (t) => {
      await writeFile(join(t, 'a.txt'), 'A1');
      await writeFile(join(t, 'stale.txt'), 'S');
    });
    await writeDirAtomic(dir, async (t) => writeFile(join(t, 'a.txt'), 'A2'));
    assert.deepEqual(readdirSync(dir), ['a.txt']);
    assert.equal(readFileSync(join(dir, 'a.txt'), 'utf8'), 'A2');
    assert.deepEqual(readdirSync(parent), ['model'], 'no temp or old directories left');
  });

  it('an error thrown inside the fill leaves the previous directory intact and removes the temp dir', async () => {
    const parent = join(tmp, 'interrupted');
    const dir = join(parent, 'model');
    await writeDirAtomic(dir, async (t) => writeFile(join(t, 'weights.bin'), 'good'));
    await assert.rejects(
      writeDirAtomic(dir, async (t) => {
        await writeFile(join(t, 'weights.bin'), 'half-writ');
        throw new Error('disk full (simulated)');
      }),
      /disk full \(simulated\)/,
    );
    assert.equal(readFileSync(join(dir, 'weights.bin'), 'utf8'), 'good');
    assert.deepEqual(readdirSync(parent), ['model']);
  });

  it('refuses to replace a regular file', async () => {
    const file = join(tmp, 'plain-file');
    writeFileSync(file, 'x');
    await assert.rejects(
      writeDirAtomic(file, async () => undefined),
      /exists and is not a directory/,
    );
    assert.equal(readFileSync(file, 'utf8'), 'x');
  });
});

describe('recoverInterruptedDirWrite', () => {
  // A pid that cannot be alive: above Linux's pid_max limit.
  const deadPid = 4194305;

  it('puts the previous directory back when a writer died between the two renames', async () => {
    const root = mkdtempSync(join(tmpdir(), 'atomic-recover-'));
    after(() => rmSync(root, { recursive: true, force: true }));
    const old = join(root, `.model.old-${deadPid}-abcd1234`);
    const tmp = join(root, `.model.tmp-${deadPid}-abcd1234`);
    mkdirSync(old);
    writeFileSync(join(old, 'config.json'), 'previous');
    mkdirSync(tmp);
    assert.equal(await recoverInterruptedDirWrite(join(root, 'model')), true);
    assert.equal(readFileSync(join(root, 'model', 'config.json'), 'utf8'), 'previous');
    assert.deepEqual(readdirSync(root), ['model']);
  });

  it('leaves the directories of a live writer alone', async () => {
    const root = mkdtempSync(join(tmpdir(), 'atomic-recover-'));
    after(() => rmSync(root, { recursive: true, force: true }));
    const live = join(root, `.model.tmp-${process.ppid}-abcd1234`);
    mkdirSync(live);
    assert.equal(await recoverInterruptedDirWrite(join(root, 'model')), false);
    assert.deepEqual(readdirSync(root), [`.model.tmp-${process.ppid}-abcd1234`]);
  });

  it('writeDirAtomic clears an abandoned temp dir before writing', async () => {
    const root = mkdtempSync(join(tmpdir(), 'atomic-recover-'));
    after(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(join(root, `.model.tmp-${deadPid}-00000000`));
    await writeDirAtomic(join(root, 'model'), async (d) => writeFile(join(d, 'a'), 'new'));
    assert.deepEqual(readdirSync(root), ['model']);
  });
});
