// Proves the GPT-2 BPE gives HF `tokenizers`' ids on the golden cases, round-trips text, never throws, stays fast.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { defaultTokenizerData } from '../../src/io/tokenizer-files.js';
import {
  bytesToUnicode,
  EOS_TOKEN,
  Gpt2Tokenizer,
  type TokenizerData,
} from '../../src/tokenizer/gpt2-bpe.js';

interface GoldenCase {
  text: string;
  ids: number[];
  decoded: string;
}
const cases: GoldenCase[] = JSON.parse(
  readFileSync(new URL('../fixtures/tokenizer-cases.json', import.meta.url), 'utf8'),
);

const rankTables = new WeakMap<TokenizerData, Map<string, number>>();

/** Independent, deliberately plain BPE over strings: merge the lowest-ranked pair, leftmost first, until none. */
function referenceBpe(data: TokenizerData, piece: string): number[] {
  const byteChars = bytesToUnicode();
  let ranks = rankTables.get(data);
  if (ranks === undefined) {
    ranks = new Map(data.merges.map(([a, b], rank) => [`${a} ${b}`, rank]));
    rankTables.set(data, ranks);
  }
  let parts = Array.from(new TextEncoder().encode(piece), (b) => byteChars[b]);
  for (;;) {
    let best = -1;
    let bestRank = Number.POSITIVE_INFINITY;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = ranks!.get(`${parts[i]} ${parts[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) return parts.map((p) => data.vocab[p]);
    parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
  }
}

/** A tiny byte-level vocabulary: the 256 byte tokens, the given merges' results, and <|endoftext|> last. */
function tinyData(merges: Array<[string, string]>): TokenizerData {
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const c of bytesToUnicode()) vocab[c] = next++;
  for (const [a, b] of merges) if (vocab[a + b] === undefined) vocab[a + b] = next++;
  vocab[EOS_TOKEN] = next;
  return { vocab, merges };
}

describe('Gpt2Tokenizer on the GPT-2 vocabulary', () => {
  let data: TokenizerData;
  let tok: Gpt2Tokenizer;
  before(async () => {
    data = await defaultTokenizerData();
    tok = new Gpt2Tokenizer(data);
  });

  it('encodes every golden case to HF tokenizers’ ids and decodes them back to HF’s text', () => {
    let matched = 0;
    const failures: string[] = [];
    for (const c of cases) {
      const ids = tok.encode(c.text);
      const decoded = tok.decode(c.ids);
      if (JSON.stringify(ids) === JSON.stringify(c.ids) && decoded === c.decoded) matched++;
      else
        failures.push(`${JSON.stringify(c.text)}: got ${JSON.stringify(ids)}, want ${JSON.stringify(c.ids)}`);
    }
    console.log(`golden tokenizer cases matched: ${matched}/${cases.length}`);
    assert.equal(cases.length, 40);
    assert.deepEqual(failures, []);
  });

  it('knows the GPT-2 vocabulary: 50257 ids, <|endoftext|> = 50256, byte tokens map to their bytes', () => {
    assert.equal(tok.vocabSize, 50257);
    assert.equal(tok.eosTokenId, 50256);
    assert.equal(tok.tokenToId(EOS_TOKEN), 50256);
    assert.equal(tok.idToToken(50256), EOS_TOKEN);
    assert.deepEqual(Array.from(tok.tokenBytes(50256)), Array.from(new TextEncoder().encode(EOS_TOKEN)));
    const byteChars = bytesToUnicode();
    for (let b = 0; b < 256; b++)
      assert.deepEqual(Array.from(tok.tokenBytes(tok.tokenToId(byteChars[b])!)), [b]);
    for (let id = 0; id < tok.vocabSize; id++) assert.equal(tok.tokenToId(tok.idToToken(id)!), id);
    assert.equal(tok.idToToken(50257), undefined);
    assert.equal(tok.tokenToId('no such token'), undefined);
  });

  it('rejects unknown ids in decode and tokenBytes with a RangeError naming the id', () => {
    for (const bad of [50257, -1, 1.5, Number.NaN]) {
      assert.throws(
        () => tok.decode([15496, bad]),
        (e: Error) => e instanceof RangeError && e.message.includes(`${bad}`),
      );
      assert.throws(() => tok.tokenBytes(bad), RangeError);
    }
  });

  it('decodes invalid UTF-8 (a split character) to U+FFFD without clean-up', () => {
    const ids = tok.encode('日');
    assert.equal(ids.length, 2, '日 (3 UTF-8 bytes) is two tokens in GPT-2');
    assert.equal(tok.decode(ids.slice(0, 1)), '\uFFFD');
    assert.equal(tok.decode(tok.encode(" 're")), " 're");
    assert.equal(tok.decode(new Uint32Array(tok.encode('typed arrays work'))), 'typed arrays work');
  });

  it('round-trips any well-formed string: decode(encode(s)) === s', () => {
    const units = ['binary', 'grapheme', 'grapheme-composite'] as const;
    for (const unit of units) {
      fc.assert(
        fc.property(fc.string({ unit, maxLength: 200 }), (s) => tok.decode(tok.encode(s)) === s),
        { numRuns: 300 },
      );
    }
    // Text built from the tricky pieces: contractions, runs of whitespace, digits, specials, multi-byte.
    const tricky = fc.constantFrom(
      ' ',
      '  ',
      '\n',
      '\t',
      '\r\n',
      "'s",
      "'ll",
      "'",
      'a',
      'Z',
      '1',
      '!',
      'é',
      '日',
      '👋🏽',
      '\u00a0',
      '\u0085',
      '\ufeff',
      EOS_TOKEN,
      '<|',
      'x',
    );
    fc.assert(
      fc.property(fc.string({ unit: tricky, maxLength: 60 }), (s) => tok.decode(tok.encode(s)) === s),
      { numRuns: 1000 },
    );
  });

  it('never throws on any string: lone surrogates encode as U+FFFD, as UTF-8 (and HF) sees them', () => {
    const anyUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
    const surrogateHeavy = fc.oneof(
      anyUnit,
      fc.constantFrom('\ud800', '\udfff', '\ud83d', '\udc4b', 'a', ' '),
    );
    fc.assert(
      fc.property(fc.string({ unit: surrogateHeavy, maxLength: 80 }), (s) => {
        const wellFormed = s.replace(/\p{Cs}/gu, '\uFFFD');
        const ids = tok.encode(s);
        assert.deepEqual(ids, tok.encode(wellFormed));
        assert.equal(tok.decode(ids), wellFormed);
      }),
      { numRuns: 1000 },
    );
    assert.equal(tok.decode(tok.encode('\ud800')), '\uFFFD');
  });

  it('splits on <|endoftext|> exactly like HF added tokens: encode(a + eos + b) = encode(a), 50256, encode(b)', () => {
    const piece = fc.constantFrom(' ', 'a', 'b', '!', '<', '|', '>', 'endoftext', '\n', '1');
    const text = fc.string({ unit: piece, maxLength: 12 }).filter((s) => !s.includes(EOS_TOKEN));
    fc.assert(
      fc.property(text, text, (a, b) => {
        assert.deepEqual(tok.encode(a + EOS_TOKEN + b), [...tok.encode(a), 50256, ...tok.encode(b)]);
      }),
      { numRuns: 500 },
    );
    assert.deepEqual(tok.encode(EOS_TOKEN + EOS_TOKEN), [50256, 50256]);
    assert.ok(!tok.encode('<|endoftext|').includes(50256));
  });

  it('merges long single pieces (heap path) exactly as a plain reference BPE does', () => {
    // Letters only, so each string is one pre-token; lengths cross the scan/heap threshold (48 bytes).
    const letter = fc.constantFrom('a', 'b', 'e', 'r', 's', 't', 'h', 'n', 'é', 'ß', '日');
    fc.assert(
      fc.property(fc.string({ unit: letter, minLength: 1, maxLength: 160 }), (s) => {
        assert.deepEqual(tok.encode(s), referenceBpe(data, s));
      }),
      { numRuns: 300 },
    );
    const long = 'supercalifragilisticexpialidocious'.repeat(5);
    assert.deepEqual(tok.encode(long), referenceBpe(data, long));
  });

  it('encodes 100 000-character runs in near-linear time (guard: < 1500 ms CPU each)', () => {
    const runs: Array<[string, string]> = [
      ['100000 × "a"', 'a'.repeat(100_000)],
      ['100000 × " "', ' '.repeat(100_000)],
      ['100000 × "é"', 'é'.repeat(100_000)],
      ['100000 × "\\n"', '\n'.repeat(100_000)],
      ['50000 × "ab"', 'ab'.repeat(50_000)],
      ['100000 × "!"', '!'.repeat(100_000)],
      ['50000 × "👋"', '👋'.repeat(50_000)],
    ];
    // The guard uses process CPU time, so a busy machine does not fail it; wall time is printed too.
    let worst = 0;
    for (const [name, text] of runs) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const ids = tok.encode(text);
      const wall = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      worst = Math.max(worst, cpuMs);
      console.log(
        `encode ${name}: ${cpuMs.toFixed(1)} ms CPU, ${wall.toFixed(1)} ms wall, ${ids.length} tokens`,
      );
      assert.equal(tok.decode(ids), text);
    }
    console.log(`slowest long run: ${worst.toFixed(1)} ms CPU`);
    assert.ok(worst < 1500, `a long run took ${worst.toFixed(0)} ms`);
  });
});

describe('Gpt2Tokenizer on a tiny vocabulary', () => {
  it('applies the lowest-ranked merge first and the leftmost occurrence first', () => {
    const data = tinyData([
      ['a', 'a'],
      ['aa', 'a'],
      ['b', 'aa'],
    ]);
    const tok = new Gpt2Tokenizer(data);
    const id = (t: string) => data.vocab[t];
    assert.deepEqual(tok.encode('aaa'), [id('aaa')]);
    assert.deepEqual(
      tok.encode('aaaa'),
      [id('aa'), id('aa')],
      'both (a a) merges (rank 0) come before (aa a)',
    );
    assert.deepEqual(tok.encode('aaaaa'), [id('aa'), id('aaa')], 'leftmost (a a) first');
    assert.deepEqual(tok.encode('baa'), [id('baa')]);
    assert.deepEqual(tok.encode('baaa'), [id('b'), id('aaa')], '(aa a) has a lower rank than (b aa)');
    for (const n of [1, 2, 3, 47, 48, 49, 50, 201]) {
      const s = 'ba'.repeat(n) + 'a'.repeat(n);
      assert.deepEqual(tok.encode(s), referenceBpe(data, s), `length ${s.length}`);
    }
  });

  it('rejects malformed vocabularies and merges with a message saying what is wrong', () => {
    const good = tinyData([['a', 'b']]);
    const cases: Array<[string, TokenizerData, RegExp]> = [
      ['empty vocab', { vocab: {}, merges: [] }, /vocab is empty/],
      ['duplicate id', { vocab: { ...good.vocab, extra: 3 }, merges: [] }, /not an integer in|used twice/],
      ['id out of range', { vocab: { ...good.vocab, [EOS_TOKEN]: 999 }, merges: [] }, /999/],
      ['unknown merge part', { vocab: good.vocab, merges: [['a', 'zz']] }, /"zz" is not in the vocab/],
      [
        'merge result missing',
        { vocab: good.vocab, merges: [['b', 'a']] },
        /result "ba" is not in the vocab/,
      ],
      [
        'repeated merge',
        {
          vocab: good.vocab,
          merges: [
            ['a', 'b'],
            ['a', 'b'],
          ],
        },
        /repeats merge 0/,
      ],
      [
        'merge not a pair',
        { vocab: good.vocab, merges: [['a'] as unknown as [string, string]] },
        /merge 0 is not a pair/,
      ],
      [
        'special not in vocab',
        { ...good, specialTokens: ['<|im_start|>'] },
        /special token "<\|im_start\|>"/,
      ],
    ];
    const noEos = { ...good.vocab };
    delete noEos[EOS_TOKEN];
    cases.push(['no <|endoftext|>', { vocab: noEos, merges: [['a', 'b']] }, /no <\|endoftext\|> token/]);
    const noByte = Object.fromEntries(
      Object.entries(good.vocab).map(([t, id]) => [t === 'Ġ' ? 'zz' : t, id]),
    );
    cases.push(['missing byte token', { vocab: noByte, merges: [] }, /byte-level token "Ġ" \(byte 32\)/]);
    for (const [name, data, message] of cases) assert.throws(() => new Gpt2Tokenizer(data), message, name);
  });
});
