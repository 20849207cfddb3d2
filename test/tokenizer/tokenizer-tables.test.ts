// Proves the shared tokenizer tables (fast file scan or general path) tokenize exactly like the tokenizer built from data.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  defaultTokenizerData,
  loadTokenizerData,
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
import { tablesFromTokenizerJson, tablesFromVocabAndMerges } from '../../src/tokenizer/tokenizer-json.js';

interface GoldenCase {
  text: string;
  ids: number[];
  decoded: string;
}
const cases: GoldenCase[] = JSON.parse(
  await readFile(new URL('../fixtures/tokenizer-cases.json', import.meta.url), 'utf8'),
);
const utf8 = new TextEncoder();

/** Tables as plain JSON-able values (typed arrays as arrays), to compare two builds field by field. */
function plain(t: TokenizerTables): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(t).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as Int32Array) : v]),
  );
}

function assertSameTables(actual: TokenizerTables | null, expected: TokenizerTables, what: string): void {
  assert.ok(actual, `${what}: the fast scan handed a well-formed file to the general path`);
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

  it('the fast scan of GPT-2’s tokenizer.json and of vocab.json + merges.txt gives the general path’s tables', () => {
    assertSameTables(
      tablesFromTokenizerJson(utf8.encode(files['tokenizer.json'])),
      expected,
      'tokenizer.json',
    );
    // vocab.json is written ASCII-only, so nearly every token there is \u-escaped.
    assertSameTables(
      tablesFromVocabAndMerges(utf8.encode(files['vocab.json']), utf8.encode(files['merges.txt'])),
      expected,
      'vocab.json + merges.txt',
    );
    const general = buildTokenizerTables(parseTokenizerJson(files['tokenizer.json'], 'tokenizer.json'));
    assertSameTables(general, expected, 'parseTokenizerJson');
  });

  it('a pipeline-written tokenizer.json (the seed-recipe fixture) scans to the general path’s tables', async () => {
    const file = new URL('../fixtures/seed-recipe-trained/tokenizer.json', import.meta.url);
    const bytes = await readFile(file);
    const general = buildTokenizerTables(parseTokenizerJson(bytes.toString('utf8'), 'tokenizer.json'));
    assertSameTables(tablesFromTokenizerJson(bytes), general, 'seed-recipe tokenizer.json');
  });

  it('every typed array lives in a SharedArrayBuffer (posting the tables to a worker shares them)', () => {
    const tables = tablesFromTokenizerJson(utf8.encode(files['tokenizer.json']))!;
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

  it('a tokenizer adopted from (cloned) tables encodes and decodes the golden cases and fuzzed text like one built from data', () => {
    const fromData = new Gpt2Tokenizer(data);
    const fromTables = new Gpt2Tokenizer(
      structuredClone(tablesFromTokenizerJson(utf8.encode(files['tokenizer.json']))!),
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

  it('random vocabularies (escapes, added tokens, "a b" merges) scan to the same tables as the general path', () => {
    let checked = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(40), fc.nat(40)), { maxLength: 60 }),
        fc.subarray(['<|pad|>', ' spaced token', 'ünï', '\u2028', 'x"y'], { maxLength: 3 }),
        fc.boolean(),
        (merges, specials, stringMerges) => {
          const d = randomData(merges, specials);
          const contents = tokenizerFileContents(d);
          let json = contents['tokenizer.json'];
          if (stringMerges) {
            const root = JSON.parse(json);
            root.model.merges = d.merges.map(([a, b]) => `${a} ${b}`);
            json = JSON.stringify(root);
          }
          const general = buildTokenizerTables(parseTokenizerJson(json, 'tokenizer.json'));
          assertSameTables(tablesFromTokenizerJson(utf8.encode(json)), general, 'tokenizer.json');
          const fromVocab = buildTokenizerTables({ vocab: d.vocab, merges: d.merges });
          assertSameTables(
            tablesFromVocabAndMerges(
              utf8.encode(contents['vocab.json']),
              utf8.encode(contents['merges.txt']),
            ),
            fromVocab,
            'vocab.json + merges.txt',
          );
          checked++;
        },
      ),
      { numRuns: 120 },
    );
    console.log(`random vocabularies scanned identically: ${checked}`);
  });

  it('non-byte-level tokens at the lowest ids (more bytes than characters) scan to the same tables', () => {
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
    const general = buildTokenizerTables(parseTokenizerJson(json, 'tokenizer.json'));
    assert.equal(general.textTokens.length, added.length);
    assertSameTables(tablesFromTokenizerJson(utf8.encode(json)), general, 'tokenizer.json');
  });

  it('hands unusual files to the general path, which loads them or fails with its usual message', async () => {
    const base = JSON.parse(files['tokenizer.json']);
    const variants: Array<[string, string]> = [
      ['byte order mark', `\uFEFF${files['tokenizer.json']}`],
      ['an id written as 5.0', files['tokenizer.json'].replace('"!": 0,', '"!": 0.0,')],
      ['a duplicate vocab key', files['tokenizer.json'].replace('"!": 0,', '"!": 0, "!": 0,')],
      [
        'a merge naming a missing token',
        JSON.stringify({ ...base, model: { ...base.model, merges: [['zz', 'q']] } }),
      ],
      ['a normalizer', JSON.stringify({ ...base, normalizer: { type: 'NFC' } })],
      ['trailing garbage', `${files['tokenizer.json']}x`],
    ];
    for (const [what, text] of variants) {
      assert.equal(tablesFromTokenizerJson(utf8.encode(text)), null, `${what}: the fast scan accepted it`);
      await writeFile(path.join(dir, 'tokenizer.json'), text);
      const viaData = await loadTokenizerData(dir)
        .then((d) => buildTokenizerTables(d!))
        .catch((e: Error) => e);
      const viaTables = await loadTokenizerTables(dir).catch((e: Error) => e);
      if (viaData instanceof Error) {
        assert.ok(viaTables instanceof Error, `${what}: loaded though the general path fails`);
        assert.ok(viaTables.message.includes(viaData.message), `${what}: ${viaTables.message}`);
        assert.match(viaTables.message, /tokenizer\.json/, `${what}: the message names the file`);
      } else {
        assertSameTables(viaTables as TokenizerTables, viaData, what);
      }
    }
  });
});
