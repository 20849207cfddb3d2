// Proves the shared tokenizer tables loaded from a model directory's files tokenize exactly like the tokenizer built from data.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  defaultTokenizerData,
  loadTokenizerTables,
  parseTokenizerJson,
  tokenizerFileContents,
} from '../../src/io/tokenizer-files.js';
import {
  buildTokenizerTables,
  bytesToUnicode,
  EOS_TOKEN,
  Gpt2Tokenizer,
  type TokenizerData,
  type TokenizerTables,
} from '../../src/tokenizer/gpt2-bpe.js';

interface GoldenCase {
  text: string;
  ids: number[];
  decoded: string;
}
const cases: GoldenCase[] = JSON.parse(
  await readFile(new URL('../fixtures/tokenizer-cases.json', import.meta.url), 'utf8'),
);

/** Tables as plain JSON-able values (typed arrays as arrays), to compare two builds field by field. */
function plain(t: TokenizerTables): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(t).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as Int32Array) : v]),
  );
}

function assertSameTables(actual: TokenizerTables | null, expected: TokenizerTables, what: string): void {
  assert.ok(actual, `${what}: no tables loaded`);
  const a = plain(actual);
  const e = plain(expected);
  for (const key of Object.keys(e)) assert.deepEqual(a[key], e[key], `${what}: ${key} differs`);
  assert.deepEqual(Object.keys(a).sort(), Object.keys(e).sort());
}

/** A small byte-level vocabulary from random merges over a few letters (results added as they appear). */
function randomData(merges: Array<[number, number]>, specials: string[]): TokenizerData {
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = {};
  chars.forEach((c, id) => {
    vocab[c] = id;
  });
  const tokens = ['a', 'b', 'c', 'Ġ', '"', '\\', 'é'];
  const list: Array<[string, string]> = [];
  const seen = new Set<string>();
  for (const [x, y] of merges) {
    const a = tokens[x % tokens.length];
    const b = tokens[y % tokens.length];
    if (seen.has(`${a} ${b}`)) continue;
    seen.add(`${a} ${b}`);
    list.push([a, b]);
    if (vocab[a + b] === undefined) {
      vocab[a + b] = Object.keys(vocab).length;
      tokens.push(a + b);
    }
  }
  vocab[EOS_TOKEN] = Object.keys(vocab).length;
  for (const s of specials) if (vocab[s] === undefined) vocab[s] = Object.keys(vocab).length;
  return { vocab, merges: list, specialTokens: [EOS_TOKEN, ...specials] };
}

/** Writes `files` (and nothing else) into a fresh directory under `root` and loads its tables. */
let loads = 0;
async function tablesFromFiles(root: string, files: Record<string, string>): Promise<TokenizerTables | null> {
  const dir = path.join(root, `load-${loads++}`);
  await mkdir(dir);
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return loadTokenizerTables(dir);
}

describe('tokenizer tables', () => {
  let data: TokenizerData;
  let expected: TokenizerTables;
  let files: Record<string, string>;
  let dir: string;
  before(async () => {
    data = await defaultTokenizerData();
    expected = buildTokenizerTables({ ...data, specialTokens: [EOS_TOKEN] });
    files = tokenizerFileContents(data);
    dir = await mkdtemp(path.join(tmpdir(), 'tiny-llm-tables-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('GPT-2’s tokenizer.json, and vocab.json + merges.txt, load to the tables built from the data', async () => {
    assertSameTables(
      await tablesFromFiles(dir, { 'tokenizer.json': files['tokenizer.json'] }),
      expected,
      'tokenizer.json',
    );
    // vocab.json is written ASCII-only, so nearly every token there is \u-escaped.
    assertSameTables(
      await tablesFromFiles(dir, { 'vocab.json': files['vocab.json'], 'merges.txt': files['merges.txt'] }),
      expected,
      'vocab.json + merges.txt',
    );
  });

  it('a pipeline-written tokenizer.json (the seed-recipe fixture) loads to the tables of its parsed data', async () => {
    const file = new URL('../fixtures/seed-recipe-trained/tokenizer.json', import.meta.url);
    const text = await readFile(file, 'utf8');
    const general = buildTokenizerTables(parseTokenizerJson(text, 'tokenizer.json'));
    assertSameTables(
      await tablesFromFiles(dir, { 'tokenizer.json': text }),
      general,
      'seed-recipe tokenizer.json',
    );
  });

  it('every typed array lives in a SharedArrayBuffer (posting the tables to a worker shares them)', async () => {
    const tables = (await tablesFromFiles(dir, { 'tokenizer.json': files['tokenizer.json'] }))!;
    for (const [key, value] of Object.entries(tables)) {
      if (ArrayBuffer.isView(value))
        assert.ok(value.buffer instanceof SharedArrayBuffer, `${key} is not shared`);
    }
    // A clone (what postMessage makes) sees writes to the original: the memory is shared, not copied.
    const cloned = structuredClone(tables);
    const before = tables.byteIds[0];
    tables.byteIds[0] = before + 1;
    assert.equal(cloned.byteIds[0], before + 1);
    tables.byteIds[0] = before;
  });

  it('a tokenizer adopted from (cloned) tables encodes and decodes the golden cases and fuzzed text like one built from data', async () => {
    const fromData = new Gpt2Tokenizer(data);
    const fromTables = new Gpt2Tokenizer(
      structuredClone((await tablesFromFiles(dir, { 'tokenizer.json': files['tokenizer.json'] }))!),
    );
    for (const c of cases) {
      assert.deepEqual(fromTables.encode(c.text), c.ids, JSON.stringify(c.text));
      assert.equal(fromTables.decode(c.ids), c.decoded);
    }
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        const ids = fromData.encode(s);
        assert.deepEqual(fromTables.encode(s), ids);
        assert.equal(fromTables.decode(ids), fromData.decode(ids));
      }),
      { numRuns: 400 },
    );
    for (const id of [0, 1, 32, 220, 50256, 1000, 49999])
      assert.equal(fromTables.idToToken(id), fromData.idToToken(id));
    assert.equal(fromTables.tokenToId('Ġthe'), fromData.tokenToId('Ġthe'));
    assert.equal(fromTables.tokenToId('no such token'), undefined);
  });

  it('random vocabularies (escapes, added tokens, "a b" merges) load from either file form to the tables of their data', async () => {
    let checked = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(40), fc.nat(40)), { maxLength: 60 }),
        fc.subarray(['<|pad|>', ' spaced token', 'ünï', '\u2028', 'x"y'], { maxLength: 3 }),
        fc.boolean(),
        async (merges, specials, stringMerges) => {
          const d = randomData(merges, specials);
          const contents = tokenizerFileContents(d);
          let json = contents['tokenizer.json'];
          if (stringMerges) {
            const root = JSON.parse(json);
            root.model.merges = d.merges.map(([a, b]) => `${a} ${b}`);
            json = JSON.stringify(root);
          }
          assertSameTables(
            await tablesFromFiles(dir, { 'tokenizer.json': json }),
            buildTokenizerTables(d),
            'tokenizer.json',
          );
          const fromVocab = buildTokenizerTables({ vocab: d.vocab, merges: d.merges });
          assertSameTables(
            await tablesFromFiles(dir, {
              'vocab.json': contents['vocab.json'],
              'merges.txt': contents['merges.txt'],
            }),
            fromVocab,
            'vocab.json + merges.txt',
          );
          checked++;
        },
      ),
      { numRuns: 60 },
    );
    console.log(`random vocabularies loaded identically from both file forms: ${checked}`);
  });

  it('non-byte-level tokens at the lowest ids (more bytes than characters) load to the tables of their data', async () => {
    const chars = bytesToUnicode();
    const vocab: Record<string, number> = {};
    // Short ones each add a little (one character, three bytes), long ones a lot: both must fit.
    const added = [
      ...Array.from({ length: 100 }, (_, i) => `漢${i}`),
      ...Array.from({ length: 5 }, (_, i) => `語彙${'漢字'.repeat(20 + i)}`),
    ];
    added.forEach((t, id) => {
      vocab[t] = id;
    });
    chars.forEach((c, b) => {
      vocab[c] = added.length + b;
    });
    vocab[EOS_TOKEN] = Object.keys(vocab).length;
    const merged = `${chars[32]}t`;
    vocab[merged] = Object.keys(vocab).length;
    const d: TokenizerData = { vocab, merges: [[chars[32], 't']], specialTokens: [EOS_TOKEN, ...added] };
    const json = tokenizerFileContents(d)['tokenizer.json'];
    const general = buildTokenizerTables(d);
    assert.equal(general.textTokens.length, added.length);
    assertSameTables(await tablesFromFiles(dir, { 'tokenizer.json': json }), general, 'tokenizer.json');
  });

  it('unusual but valid files load; broken ones fail with a message naming the file and the problem', async () => {
    const base = JSON.parse(files['tokenizer.json']);
    const variants: Array<[string, string, RegExp | null]> = [
      ['byte order mark', `\uFEFF${files['tokenizer.json']}`, null],
      ['an id written as 5.0', files['tokenizer.json'].replace('"!": 0,', '"!": 0.0,'), null],
      ['a duplicate vocab key', files['tokenizer.json'].replace('"!": 0,', '"!": 0, "!": 0,'), null],
      [
        'a merge naming a missing token',
        JSON.stringify({ ...base, model: { ...base.model, merges: [['zz', 'q']] } }),
        /merge 0 \(zz q\)/,
      ],
      [
        'a normalizer',
        JSON.stringify({ ...base, normalizer: { type: 'NFC' } }),
        /a normalizer is not supported/,
      ],
      ['trailing garbage', `${files['tokenizer.json']}x`, /bad JSON/],
    ];
    for (const [what, text, failure] of variants) {
      const loaded = await tablesFromFiles(dir, { 'tokenizer.json': text }).catch((e: Error) => e);
      if (failure === null) {
        assertSameTables(loaded as TokenizerTables, expected, what);
        continue;
      }
      assert.ok(loaded instanceof Error, `${what}: loaded`);
      assert.match(loaded.message, /tokenizer\.json/, `${what}: the message names the file`);
      assert.match(loaded.message, failure, `${what}: ${loaded.message}`);
    }
    // An added token named like an Object.prototype member is a new token, not that member.
    const proto = await tablesFromFiles(dir, {
      'tokenizer.json': JSON.stringify({
        ...base,
        added_tokens: [...base.added_tokens, { id: 50257, content: 'toString', special: true }],
      }),
    });
    assert.equal(proto?.vocabSize, 50258);
    assert.deepEqual(proto?.specialTokens.at(-1), ['toString', 50257]);
  });
});
