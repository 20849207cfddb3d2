// Manual differential check (not in `npm test`): our tokenizer vs Hugging Face's own `tokenizers` (Rust, npm) on fuzz.
// Run: (cd /tmp/hf && npm i tokenizers@0.23.2) && HF_TOKENIZERS=/tmp/hf/node_modules/tokenizers \
//      node --import tsx test/tokenizer/hf-differential.ts [samples per generator]
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { defaultTokenizerData, writeTokenizerFiles } from '../../src/io/tokenizer-files.js';
import { Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';

interface HfTokenizer {
  encode(text: string, pair: null, options: { addSpecialTokens: boolean }): Promise<{ getIds(): number[] }>;
  decode(ids: number[], skipSpecialTokens: boolean): Promise<string>;
}

const modulePath = process.env.HF_TOKENIZERS;
if (!modulePath) {
  console.error(
    'set HF_TOKENIZERS to the folder of the npm package `tokenizers` (see the comment at the top)',
  );
  process.exit(2);
}
const samples = Number(process.argv[2] ?? 3000);
const { Tokenizer } = createRequire(import.meta.url)(modulePath);
const data = await defaultTokenizerData();
const dir = await mkdtemp(path.join(tmpdir(), 'hf-differential-'));
await writeTokenizerFiles(dir, data);
// HF reads the tokenizer.json we wrote: that also proves HF can load our file.
const hf: HfTokenizer = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
await rm(dir, { recursive: true, force: true });
const ours = new Gpt2Tokenizer(data);

let checked = 0;
const mismatches: string[] = [];
async function check(text: string): Promise<void> {
  checked++;
  const ids = ours.encode(text);
  const want = Array.from((await hf.encode(text, null, { addSpecialTokens: true })).getIds());
  if (JSON.stringify(ids) !== JSON.stringify(want)) {
    mismatches.push(
      `encode ${JSON.stringify(text)}: ours ${JSON.stringify(ids)}, hf ${JSON.stringify(want)}`,
    );
    return;
  }
  const text2 = await hf.decode(want, false);
  if (ours.decode(ids) !== text2)
    mismatches.push(`decode ${JSON.stringify(ids)}: hf ${JSON.stringify(text2)}`);
}

// Characters where JS regex classes and HF's (Oniguruma) differ or are easy to get wrong.
const probes = ['\u0085', '\ufeff', '\u00a0', '\u2028', '\u200b', '\u3000', '\u180e', '\u000b', '\u001c'];
for (const w of probes) {
  for (const t of [
    `a${w}b`,
    `!${w}`,
    `${w}!`,
    `x ${w} y`,
    `${w}${w}z`,
    `z${w}${w}`,
    ` ${w}`,
    `${w} `,
    `1${w}2`,
  ])
    await check(t);
}
const piece = fc.constantFrom(
  ...[
    ' ',
    '  ',
    '\n',
    '\t',
    '\r',
    "'s",
    "'t",
    "'re",
    "'LL",
    "'",
    'a',
    'Z',
    '1',
    '²',
    '!',
    '.',
    'é',
    'e\u0301',
  ],
  ...[
    '日',
    '👋🏽',
    '\u00a0',
    '\u0085',
    '\ufeff',
    '<|endoftext|>',
    '<|',
    'endoftext',
    '|>',
    '\ud800',
    '\udc00',
    '٣',
  ],
);
const anyUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
const generators = [
  fc.string({ unit: piece, maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({ unit: 'grapheme', maxLength: 60 }),
  fc.string({ unit: anyUnit, maxLength: 40 }),
];
for (const g of generators) for (const t of fc.sample(g, samples)) await check(t);
for (const t of [
  'a'.repeat(5000),
  `${' '.repeat(3000)}x`,
  'ab'.repeat(3000),
  'é'.repeat(3000),
  '\n'.repeat(3001),
]) {
  await check(t);
}
console.log(`checked ${checked} strings against HF tokenizers: ${mismatches.length} mismatches`);
for (const m of mismatches.slice(0, 20)) console.log(m);
process.exit(mismatches.length === 0 ? 0 : 1);
