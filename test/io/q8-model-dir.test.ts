// Model directories stored as int8 (saveModelDir weights 'q8_0' → model.q8_0.gguf): the loader keeps the matrices
// as Q8_0, checks the GGUF against config.json, and the float32 loader refuses such a directory with the reason.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { loadModelDir, loadQ8ModelDir, modelDirWeights, saveModelDir } from '../../src/io/checkpoint.js';
import { defaultTokenizerData, type TokenizerData } from '../../src/io/tokenizer-files.js';

const config: GPTConfig = {
  vocabSize: 50257,
  nPositions: 32,
  nEmbd: 32,
  nLayer: 1,
  nHead: 2,
  layerNormEpsilon: 1e-5,
  tieWordEmbeddings: true,
  bosTokenId: 50256,
  eosTokenId: 50256,
};

let work: string;
let params: Float32Array;
let tokenizerData: TokenizerData;
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'tiny-llm-q8io-'));
  const rng = new Rng(3);
  params = new Float32Array(parameterLayout(config).total);
  for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.02;
  tokenizerData = await defaultTokenizerData();
});
after(() => rmSync(work, { recursive: true, force: true }));

describe('model directories stored as int8', () => {
  it('loads as Q8_0: the logits equal float32 weights quantised at load', async () => {
    const dir = join(work, 'ok');
    await saveModelDir(dir, { config, params, tokenizerData, weights: 'q8_0' });
    assert.equal(await modelDirWeights(dir), 'q8_0');
    const loaded = await loadQ8ModelDir(dir, { requireTokenizer: true });
    assert.deepEqual(loaded.config, config);
    assert.ok(loaded.tokenizerData, 'the directory tokenizer is read');
    const stored = new InferenceWeights(loaded.config, loaded.source);
    assert.equal(stored.format, 'q8_0');
    const atLoad = new InferenceWeights(config, params, { quantize: 'q8_0' });
    const ids = [464, 2068, 7586, 21831];
    const a = new InferenceSession(stored).allLogits(ids);
    const b = new InferenceSession(atLoad).allLogits(ids);
    let max = 0;
    for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
    console.log(`max |logit difference| stored q8_0 vs quantised at load: ${max}`);
    assert.equal(max, 0);
  });

  it('refuses a GGUF that disagrees with config.json, naming the file and the field', async () => {
    const dir = join(work, 'mismatch');
    await saveModelDir(dir, { config, params, tokenizerData, weights: 'q8_0' });
    const file = join(dir, 'config.json');
    const hf = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...hf, n_positions: 64 }));
    await assert.rejects(loadQ8ModelDir(dir), (err: Error) => {
      assert.ok(err.message.startsWith(join(dir, 'model.q8_0.gguf')), err.message);
      assert.match(err.message, /n_positions is 32 but config\.json says 64/);
      return true;
    });
  });

  it('the float32 loader refuses it with the reason; saving refuses what Q8_0 cannot store', async () => {
    const dir = join(work, 'ok');
    await assert.rejects(
      loadModelDir(dir),
      /model\.q8_0\.gguf: holds Q8_0 \(int8\) weights; this needs float32/,
    );
    await assert.rejects(
      saveModelDir(join(work, 'no-tokenizer'), { config, params, tokenizerData: null, weights: 'q8_0' }),
      /model\.q8_0\.gguf needs a tokenizer/,
    );
    const narrow = { ...config, nEmbd: 16, nHead: 1 };
    await assert.rejects(
      saveModelDir(join(work, 'narrow'), {
        config: narrow,
        params: new Float32Array(parameterLayout(narrow).total),
        tokenizerData,
        weights: 'q8_0',
      }),
      /q8_0 weights need n_embd a multiple of 32 \(Q8_0 blocks\), got 16/,
    );
  });
});
