// `tiny-llm eval` against PyTorch: on the seed-tiny model, the per-token loss of the reference prompts (one per
// line) must equal HF's per-prompt losses weighted by their predicted-token counts; plus its error exits.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultTokenizerData, writeTokenizerFiles } from '../../src/io/tokenizer-files.js';
import { runCli } from '../helpers/cli.js';
import { fixture, readJson } from '../helpers/fixtures.js';

interface RefCase {
  prompt: string;
  input_ids: number[];
  loss_with_labels: number;
}

let work: string;
let modelDir: string;
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'tiny-llm-eval-'));
  modelDir = join(work, 'seed-tiny');
  mkdirSync(modelDir);
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors'])
    copyFileSync(fixture('seed-tiny', f), join(modelDir, f));
  await writeTokenizerFiles(modelDir, await defaultTokenizerData());
});
after(() => rmSync(work, { recursive: true, force: true }));

describe('tiny-llm eval', () => {
  it('equals the token-weighted mean of the reference losses (blank and one-token lines add nothing)', async () => {
    // Multi-line prompts would be split into lines by eval; the single-line ones are the reference here.
    const cases = readJson<{ cases: RefCase[] }>(fixture('seed-tiny', 'reference.json')).cases.filter(
      (c) => !c.prompt.includes('\n'),
    );
    assert.ok(cases.length >= 2);
    const data = join(work, 'prompts.txt');
    writeFileSync(data, `${cases.map((c) => c.prompt).join('\n\n')}\nHello\n`);
    const r = await runCli(['eval', '--model-dir', modelDir, '--data-file', data, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    let total = 0;
    let tokens = 0;
    for (const c of cases) {
      total += c.loss_with_labels * (c.input_ids.length - 1);
      tokens += c.input_ids.length - 1;
    }
    const expected = total / tokens;
    console.log(
      `eval ${out.loss}, reference ${expected}, rel diff ${Math.abs(out.loss - expected) / expected}`,
    );
    assert.deepEqual(Object.keys(out), ['lines', 'tokens', 'loss']);
    assert.equal(out.lines, cases.length + 1);
    assert.equal(out.tokens, tokens);
    assert.ok(Math.abs(out.loss - expected) / expected < 1e-5);
  });

  it('bad arguments exit 2 with usage; unreadable inputs exit 1 naming the problem', async () => {
    const missing = await runCli(['eval', '--data-file', 'x.txt']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /usage: tiny-llm eval[\s\S]*--model-dir is required/);
    const unknown = await runCli(['eval', '--model-dir', modelDir, '--data-file', 'x', '--nope']);
    assert.equal(unknown.code, 2);
    const noFile = await runCli([
      'eval',
      '--model-dir',
      modelDir,
      '--data-file',
      join(work, 'none.txt'),
      '--json',
    ]);
    assert.equal(noFile.code, 1);
    assert.match(noFile.stderr, /data file .*none.txt: does not exist/);
    const bare = join(work, 'bare');
    mkdirSync(bare);
    copyFileSync(fixture('seed-tiny', 'config.json'), join(bare, 'config.json'));
    copyFileSync(fixture('seed-tiny', 'model.safetensors'), join(bare, 'model.safetensors'));
    const noTok = await runCli(['eval', '--model-dir', bare, '--data-file', join(work, 'prompts.txt')]);
    assert.equal(noTok.code, 1);
    assert.match(noTok.stderr, /no tokenizer files/);
  });
});
