// Proves tokenizer-tables.bin: saveModelDir writes it, a load uses it only for the exact files it was made from,
// gives the same tables as a scan, and a stale, damaged, crafted or other-version file falls back to the scan.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { saveModelDir } from '../../src/io/checkpoint.js';
import {
  decodeTokenizerCache,
  encodeTokenizerCache,
  TOKENIZER_CACHE_FILE,
  TOKENIZER_CACHE_VERSION,
  tokenizerSourceHash,
} from '../../src/io/tokenizer-cache.js';
import {
  loadTokenizerTablesFrom,
  readHashedTokenizerSources,
  writeTokenizerCache,
  writeTokenizerFiles,
} from '../../src/io/tokenizer-files.js';
import { Gpt2Tokenizer, type TokenizerTables } from '../../src/tokenizer/gpt2-bpe.js';
import { smallTokenizerData } from './small-tokenizer.js';

const root = mkdtempSync(join(tmpdir(), 'tokenizer-cache-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** The tables as plain arrays, for deepEqual across SharedArrayBuffers. */
function plain(t: TokenizerTables): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(t).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as Int32Array) : v]),
  );
}

/** A fresh model directory with the 512-token tokenizer, saved by saveModelDir. */
async function modelDir(name: string): Promise<string> {
  const dir = join(root, name);
  const config = {
    vocabSize: 512,
    nPositions: 16,
    nEmbd: 8,
    nLayer: 1,
    nHead: 1,
    layerNormEpsilon: 1e-5,
    tieWordEmbeddings: true,
    bosTokenId: 511,
    eosTokenId: 511,
  };
  const { parameterLayout } = await import('../../src/engine/layout.js');
  const params = new Float32Array(parameterLayout(config).total).fill(0.01);
  await saveModelDir(dir, { config, params, tokenizerData: smallTokenizerData() });
  return dir;
}

/** The tables a scan of the directory's files gives (the cache file moved aside for the call). */
async function scanned(dir: string): Promise<TokenizerTables> {
  const cacheFile = join(dir, TOKENIZER_CACHE_FILE);
  const saved = readFileSync(cacheFile);
  unlinkSync(cacheFile);
  try {
    const loaded = await loadTokenizerTablesFrom(dir);
    assert.ok(loaded);
    assert.equal(loaded.source, `parsed tokenizer.json (no ${TOKENIZER_CACHE_FILE})`);
    return loaded.tables;
  } finally {
    writeFileSync(cacheFile, saved);
  }
}

describe('tokenizer-tables.bin', () => {
  let dir: string;
  before(async () => {
    dir = await modelDir('saved');
  });

  it('saveModelDir writes it, and a load uses it: the same tables and encodings as a scan of the files', async () => {
    const loaded = await loadTokenizerTablesFrom(dir);
    assert.ok(loaded);
    assert.equal(loaded.source, TOKENIZER_CACHE_FILE);
    const scan = await scanned(dir);
    assert.deepEqual(plain(loaded.tables), plain(scan));
    for (const [key, value] of Object.entries(loaded.tables)) {
      if (ArrayBuffer.isView(value))
        assert.ok(value.buffer instanceof SharedArrayBuffer, `${key} is not shared`);
    }
    const text = 'the quick brown fox<|endoftext|> ends here, then starts again';
    assert.deepEqual(new Gpt2Tokenizer(loaded.tables).encode(text), new Gpt2Tokenizer(scan).encode(text));
  });

  it('the same files give the same bytes (a rebuild does not change the model directory)', async () => {
    const again = await modelDir('again');
    assert.ok(
      readFileSync(join(again, TOKENIZER_CACHE_FILE)).equals(readFileSync(join(dir, TOKENIZER_CACHE_FILE))),
    );
  });

  it('is not used once the tokenizer files change, and the new files are scanned', async () => {
    const changed = await modelDir('changed');
    const data = smallTokenizerData();
    // Swap two merges: other files, other tables.
    [data.merges[0], data.merges[1]] = [data.merges[1], data.merges[0]];
    await writeTokenizerFiles(changed, data, { modelMaxLength: 16 });
    const loaded = await loadTokenizerTablesFrom(changed);
    assert.ok(loaded);
    assert.equal(
      loaded.source,
      `parsed tokenizer.json (${TOKENIZER_CACHE_FILE} not used: made from other tokenizer files)`,
    );
    await writeTokenizerCache(changed);
    const reloaded = await loadTokenizerTablesFrom(changed);
    assert.equal(reloaded?.source, TOKENIZER_CACHE_FILE);
    assert.deepEqual(plain(reloaded!.tables), plain(loaded.tables));
  });

  it('works for vocab.json + merges.txt without tokenizer.json', async () => {
    const pair = await modelDir('pair');
    const scan = (await loadTokenizerTablesFrom(pair))!.tables;
    unlinkSync(join(pair, 'tokenizer.json'));
    const stale = await loadTokenizerTablesFrom(pair);
    assert.match(
      stale!.source,
      /^parsed vocab\.json \+ merges\.txt \(.* not used: made from other tokenizer files\)$/,
    );
    await writeTokenizerCache(pair);
    const loaded = await loadTokenizerTablesFrom(pair);
    assert.equal(loaded?.source, TOKENIZER_CACHE_FILE);
    assert.deepEqual(plain(loaded!.tables), plain(scan));
  });

  it('the files are read and hashed off the thread as tokenizerSourceHash hashes them, for both layouts', async () => {
    const pair = await modelDir('hash-pair');
    unlinkSync(join(pair, 'tokenizer.json'));
    for (const [where, names] of [
      [dir, ['tokenizer.json']],
      [pair, ['vocab.json', 'merges.txt']],
    ] as const) {
      const read = await readHashedTokenizerSources(where);
      assert.ok(read);
      assert.deepEqual(
        read.sources.map(([name]) => name),
        names,
      );
      const fromFiles = names.map((name) => [name, readFileSync(join(where, name))] as const);
      for (const [i, [, bytes]] of read.sources.entries())
        assert.ok(Buffer.from(bytes).equals(fromFiles[i][1]), `${names[i]}: other bytes`);
      assert.deepEqual(await read.hash, tokenizerSourceHash(fromFiles));
    }
    const empty = join(root, 'no-tokenizer');
    mkdirSync(empty);
    writeFileSync(join(empty, 'vocab.json'), '{}');
    assert.equal(await readHashedTokenizerSources(empty), null, 'vocab.json alone is no tokenizer');
  });

  it('a load says why it scanned: stale before damaged, as the checks run in that order', async () => {
    const damagedDir = await modelDir('damaged');
    const file = join(damagedDir, TOKENIZER_CACHE_FILE);
    const bytes = readFileSync(file);
    bytes[bytes.length - 100] ^= 1;
    writeFileSync(file, bytes);
    const damaged = await loadTokenizerTablesFrom(damagedDir);
    assert.equal(
      damaged?.source,
      `parsed tokenizer.json (${TOKENIZER_CACHE_FILE} not used: damaged (its checksum does not match))`,
    );
    const data = smallTokenizerData();
    [data.merges[0], data.merges[1]] = [data.merges[1], data.merges[0]];
    await writeTokenizerFiles(damagedDir, data, { modelMaxLength: 16 });
    const both = await loadTokenizerTablesFrom(damagedDir);
    assert.equal(
      both?.source,
      `parsed tokenizer.json (${TOKENIZER_CACHE_FILE} not used: made from other tokenizer files)`,
    );
    assert.deepEqual(plain(both!.tables), plain(await scanned(damagedDir)));
  });

  it('a damaged, truncated, foreign or other-version file is not used, and says why', async () => {
    const file = readFileSync(join(dir, TOKENIZER_CACHE_FILE));
    const hash = tokenizerSourceHash([['tokenizer.json', readFileSync(join(dir, 'tokenizer.json'))]]);
    const why = (bytes: Uint8Array): string => {
      try {
        decodeTokenizerCache(bytes, hash);
        return 'used';
      } catch (err) {
        return (err as Error).message;
      }
    };
    assert.equal(why(file), 'used');
    const flipped = Uint8Array.from(file);
    flipped[file.length - 100] ^= 1;
    assert.equal(why(flipped), 'damaged (its checksum does not match)');
    assert.match(why(file.subarray(0, file.length - 4)), /bytes, the header says/);
    assert.equal(
      why(new TextEncoder().encode('{"not": "a cache"}'.padEnd(100))),
      'not a tokenizer cache file',
    );
    const version = Uint8Array.from(file);
    new DataView(version.buffer).setUint32(8, TOKENIZER_CACHE_VERSION + 1, true);
    assert.equal(
      why(version),
      `format version ${TOKENIZER_CACHE_VERSION + 1}, this build reads ${TOKENIZER_CACHE_VERSION}`,
    );
  });

  it('a file with a valid checksum but entries out of range is refused (it could not index the tables)', async () => {
    const hash = tokenizerSourceHash([['tokenizer.json', readFileSync(join(dir, 'tokenizer.json'))]]);
    const good = (await loadTokenizerTablesFrom(dir))!.tables;
    const crafted = (change: (t: TokenizerTables) => void): string => {
      const t = {
        ...good,
        byteIds: good.byteIds.slice(),
        pairs: good.pairs.slice(),
        offsets: good.offsets.slice(),
      };
      change(t);
      try {
        decodeTokenizerCache(encodeTokenizerCache(t, hash), hash);
        return 'used';
      } catch (err) {
        return (err as Error).message;
      }
    };
    assert.equal(
      crafted(() => {}),
      'used',
    );
    assert.equal(
      crafted((t) => (t.byteIds[3] = t.vocabSize)),
      'a byte token id is out of range',
    );
    assert.equal(
      crafted((t) => (t.offsets[5] = t.offsets[7])),
      'token offsets fall at 5',
    );
    const slot = good.pairs.findIndex((v, i) => i % 3 === 0 && v !== -1);
    assert.match(
      crafted((t) => (t.pairs[slot + 2] = 10_000)),
      /^merge table slot \d+ is out of range$/,
    );
    assert.match(
      crafted((t) => (t.pairs[slot] = -1)),
      /^the merge table holds \d+ merges, the results list \d+$/,
    );
    assert.equal(
      crafted((t) => (t.specialTokens = [['<|x|>', t.vocabSize]])),
      'its special tokens are not [text, id] pairs',
    );
  });
});
