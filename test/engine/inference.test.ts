// Golden conformance of inference: our logits, losses and greedy decodes equal PyTorch + transformers'.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { GPT2 } from '../../src/engine/model.js';
import { generateAll } from '../../src/generate/generate.js';
import { loadModelDir, saveModelDir } from '../../src/io/checkpoint.js';
import { Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';
import { fixture, maxAbsDiff, readJson, readReferenceTensors, repoRoot } from '../helpers/fixtures.js';

interface MultiCase {
  input_ids: number[];
  loss_with_labels: number | null;
  greedy_24: number[];
  last_top10: number[];
}
interface SeedCase {
  prompt: string;
  input_ids: number[];
  loss_with_labels: number;
  last_logits_top10: number[];
  last_logits_top10_values: number[];
  logits_sum_per_position: number[];
  greedy_20: number[];
}

function topIds(logits: Float32Array, k: number): number[] {
  return Array.from(logits, (v, i) => [v, i] as const)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .slice(0, k)
    .map(([, i]) => i);
}

function greedy(weights: InferenceWeights, prompt: number[], n: number, eos: number | null): number[] {
  const session = new InferenceSession(weights);
  const opts = {
    temperature: 0,
    topK: 0,
    topP: 1,
    repetitionPenalty: 1,
    maxNewTokens: n,
    seed: 0,
    eosTokenId: eos,
  };
  const result = generateAll(session, null, prompt, opts);
  return result.endedByEos ? [...result.ids, eos!] : result.ids;
}

/** Loss with labels = inputs (HF shifts inside): mean over positions 0..T−2 predicting the next id. */
function lossWithLabels(model: GPT2, ids: number[]): number {
  const inputs = Int32Array.from(ids);
  const targets = new Int32Array(ids.length).fill(-1);
  for (let t = 0; t + 1 < ids.length; t++) targets[t] = ids[t + 1];
  return model.loss(inputs, targets, 1, ids.length);
}

async function load(dir: string) {
  const m = await loadModelDir(dir, { requireTokenizer: false });
  return { ...m, weights: new InferenceWeights(m.config, m.params), model: new GPT2(m.config, m.params) };
}

describe('multi-v512 (3 layers, 4 heads) against transformers', async () => {
  const dir = fixture('multi-v512');
  const { weights, model, config } = await load(dir);
  const ref = readJson<{ cases: MultiCase[] }>(join(dir, 'reference.json'));

  it('full logits match reference-logits.safetensors within 1e-4', () => {
    const t = readReferenceTensors(join(dir, 'reference-logits.safetensors'));
    const ids = Array.from(t.get('input_ids')!.data);
    const ours = new InferenceSession(weights).allLogits(ids);
    const diff = maxAbsDiff(ours, t.get('logits')!.data);
    console.log(
      `multi-v512 logits [${ids.length}×${config.vocabSize}]: largest abs diff ${diff.toExponential(2)}`,
    );
    assert.ok(diff <= 1e-4);
  });

  for (const [i, c] of ref.cases.entries()) {
    it(`case ${i}: top-10 ids, loss and 24 greedy tokens`, () => {
      const session = new InferenceSession(weights);
      const last = session.prefill(c.input_ids);
      assert.deepEqual(topIds(last, 10), c.last_top10);
      if (c.loss_with_labels !== null) {
        const loss = lossWithLabels(model, c.input_ids);
        const rel = Math.abs(loss - c.loss_with_labels) / c.loss_with_labels;
        console.log(`case ${i}: loss ${loss} vs ${c.loss_with_labels} (rel diff ${rel.toExponential(2)})`);
        assert.ok(rel <= 1e-5);
      }
      assert.deepEqual(greedy(weights, c.input_ids, 24, config.eosTokenId), c.greedy_24);
    });
  }

  it('KV-cache decoding equals a full recompute at every position', () => {
    const ids = ref.cases[2].input_ids.slice(0, 40);
    const full = new InferenceSession(weights).allLogits(ids);
    const session = new InferenceSession(weights);
    let worst = 0;
    for (let t = 0; t < ids.length; t++) {
      const step = t === 0 ? session.prefill([ids[0]]) : session.step(ids[t]);
      const row = full.subarray(t * config.vocabSize, (t + 1) * config.vocabSize);
      worst = Math.max(worst, maxAbsDiff(step, row));
    }
    // A prefill of a prefix followed by steps must agree too.
    const mixed = new InferenceSession(weights);
    mixed.prefill(ids.slice(0, 17));
    for (let t = 17; t < ids.length - 1; t++) mixed.step(ids[t]);
    const lastRow = full.subarray((ids.length - 1) * config.vocabSize);
    worst = Math.max(worst, maxAbsDiff(mixed.step(ids[ids.length - 1]), lastRow));
    console.log(
      `KV cache vs recompute over ${ids.length} positions: largest abs diff ${worst.toExponential(2)}`,
    );
    assert.ok(worst <= 1e-5);
  });

  it('save → load gives identical parameters and logits', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-save-'));
    after(() => rmSync(tmp, { recursive: true, force: true }));
    const out = join(tmp, 'model');
    await saveModelDir(out, { config, params: weights.params!, tokenizerData: null });
    const again = await load(out);
    assert.equal(maxAbsDiff(again.params, weights.params!), 0);
    const ids = ref.cases[1].input_ids;
    assert.equal(
      maxAbsDiff(
        new InferenceSession(again.weights).allLogits(ids),
        new InferenceSession(weights).allLogits(ids),
      ),
      0,
    );
  });
});

describe('seed-tiny (the original config, GPT-2 vocabulary) against transformers', async () => {
  const dir = fixture('seed-tiny');
  const { weights, model, config } = await load(dir);
  const ref = readJson<{ cases: SeedCase[] }>(join(dir, 'reference.json'));

  for (const [i, c] of ref.cases.entries()) {
    it(`case ${i} "${c.prompt}": top-10 logits, per-position sums, loss and 20 greedy tokens`, () => {
      const all = new InferenceSession(weights).allLogits(c.input_ids);
      const V = config.vocabSize;
      const last = all.subarray((c.input_ids.length - 1) * V);
      assert.deepEqual(topIds(last, 10), c.last_logits_top10);
      const valueDiff = maxAbsDiff(
        c.last_logits_top10.map((id) => last[id]),
        c.last_logits_top10_values,
      );
      const sums = c.input_ids.map((_, t) => all.subarray(t * V, (t + 1) * V).reduce((a, b) => a + b, 0));
      // A sum over 50 257 logits accumulates float32 roundings; 1e-3 is still ~1e-8 per logit.
      const sumDiff = maxAbsDiff(sums, c.logits_sum_per_position);
      const loss = lossWithLabels(model, c.input_ids);
      const rel = Math.abs(loss - c.loss_with_labels) / c.loss_with_labels;
      console.log(
        `seed-tiny case ${i}: top-10 value diff ${valueDiff.toExponential(2)}, sum diff ${sumDiff.toExponential(2)}, loss rel diff ${rel.toExponential(2)}`,
      );
      assert.ok(valueDiff <= 1e-4);
      assert.ok(sumDiff <= 1e-3);
      assert.ok(rel <= 1e-5);
      assert.deepEqual(greedy(weights, c.input_ids, 20, config.eosTokenId), c.greedy_20);
    });
  }
});

describe('seed-recipe-trained: a checkpoint written by the Python stack', async () => {
  const dir = fixture('seed-recipe-trained');

  it('loads with its own tokenizer.json (no vocab.json/merges.txt) and decodes consistently', async () => {
    const m = await loadModelDir(dir, { requireTokenizer: true });
    assert.ok(m.tokenizerData, 'tokenizer loaded from tokenizer.json');
    assert.equal(m.config.nEmbd, 16);
    const tokenizer = new Gpt2Tokenizer(m.tokenizerData!);
    assert.deepEqual(tokenizer.encode('Hello world'), [15496, 995]);
    const weights = new InferenceWeights(m.config, m.params);
    const prompt = tokenizer.encode('Terraform provisions');
    const ids = greedy(weights, prompt, 20, m.config.eosTokenId);
    // Greedy decoding through the KV cache must pick the argmax of a full recompute at every step.
    const seq = [...prompt, ...ids];
    const full = new InferenceSession(weights).allLogits(seq);
    for (let t = prompt.length - 1; t < seq.length - 1; t++) {
      const row = full.subarray(t * m.config.vocabSize, (t + 1) * m.config.vocabSize);
      assert.equal(topIds(row, 1)[0], seq[t + 1], `position ${t}`);
    }
  });

  const corpus = join(repoRoot, '..', 'shared', 'seed', 'training_data.txt');
  it('per-token loss on the original corpus is the original pipeline’s 8.585 nats', {
    skip: !existsSync(corpus) && 'the original corpus (../shared/seed) is not beside this checkout',
  }, async () => {
    const m = await loadModelDir(dir, { requireTokenizer: true });
    const tokenizer = new Gpt2Tokenizer(m.tokenizerData!);
    const model = new GPT2(m.config, m.params);
    let total = 0;
    let count = 0;
    for (const line of readFileSync(corpus, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      const ids = tokenizer.encode(line).slice(0, m.config.nPositions);
      if (ids.length < 2) continue;
      total += lossWithLabels(model, ids) * (ids.length - 1);
      count += ids.length - 1;
    }
    const loss = total / count;
    console.log(
      `seed-recipe-trained on the original corpus: ${loss.toFixed(4)} nats/token over ${count} tokens`,
    );
    assert.ok(Math.abs(loss - 8.585) < 0.01);
  });
});
