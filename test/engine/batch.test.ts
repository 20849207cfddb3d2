// Batched decode: sequences stepped together (each its own cache and position, joining and leaving between steps,
// in any order) get exactly the logits and top-k they get decoding alone; and generations driven through it
// produce the tokens and text they produce alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { BatchDecoder, InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { setWasmKernelsEnabled } from '../../src/engine/wasm/runtime.js';
import { type GenerateOptions, Generation, generateAll } from '../../src/generate/generate.js';
import { SamplerScratch } from '../../src/generate/sampler.js';
import { Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';
import { maxAbsDiff } from '../helpers/fixtures.js';
import { smallTokenizerData } from '../io/small-tokenizer.js';

function model(
  V: number,
  C: number,
  seed: number,
  coldScale = 1,
): { config: GPTConfig; params: Float32Array } {
  const config: GPTConfig = {
    vocabSize: V,
    nPositions: 48,
    nEmbd: C,
    nLayer: 2,
    nHead: 4,
    layerNormEpsilon: 1e-5,
    tieWordEmbeddings: true,
    bosTokenId: 0,
    eosTokenId: V - 1,
  };
  const rng = new Rng(seed);
  const params = new Float32Array(parameterLayout(config).total);
  for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.15;
  // Shrink all but every 10th embedding row: a model with hot rows.
  if (coldScale !== 1)
    for (let v = 0; v < V; v++) if (v % 10 !== 0) for (let c = 0; c < C; c++) params[v * C + c] *= coldScale;
  return { config, params };
}

const PROMPTS = [[1], [5, 6, 7], [9, 8, 7, 6, 5, 4, 3], [2, 2], [100, 3, 44, 5, 6]];

/** Steps the same sequences alone and in batches (a changing set, in a changing order); returns the largest difference. */
function compare(weights: InferenceWeights, k: number): { steps: number; worst: number; answered: string[] } {
  const n = PROMPTS.length;
  const alone = PROMPTS.map(() => new InferenceSession(weights));
  const batched = PROMPTS.map(() => new InferenceSession(weights));
  const decoder = new BatchDecoder(weights, n);
  const V = weights.config.vocabSize;
  const ids = new Int32Array(Math.max(k, 1));
  const values = new Float64Array(Math.max(k, 1));
  const wantIds = new Int32Array(Math.max(k, 1));
  const wantValues = new Float64Array(Math.max(k, 1));
  const rng = new Rng(7);
  let worst = 0;
  let steps = 0;
  const answered = new Set<string>();
  // Prompts are prefilled on their own; then each step takes a random subset in a random order.
  for (let i = 0; i < n; i++) {
    alone[i].prefill(PROMPTS[i]);
    batched[i].prefill(PROMPTS[i]);
  }
  for (let step = 0; step < 12; step++) {
    const members = PROMPTS.map((_, i) => i).filter(() => rng.random() < 0.7);
    if (members.length === 0) members.push(step % n);
    for (let j = members.length - 1; j > 0; j--) {
      const t = Math.floor(rng.random() * (j + 1));
      [members[j], members[t]] = [members[t], members[j]];
    }
    const tokens = members.map((i) => (i * 31 + step * 17) % V);
    decoder.step(
      members.map((i) => batched[i]),
      tokens,
    );
    members.forEach((i, r) => {
      const want = Float32Array.from(alone[i].prefill([tokens[r]]));
      const got = decoder.answer(r, 0, ids, values);
      assert.ok(got, 'k = 0 answers with logits');
      worst = Math.max(worst, maxAbsDiff(got, want));
      if (k > 0) {
        const a = decoder.answer(r, k, ids, values);
        const b = alone[i].lmHead.top(0, k, wantIds, wantValues);
        assert.equal(a === null, b, `sequence ${i} step ${step}: one answered top-k, the other did not`);
        if (a === null) {
          assert.deepEqual(ids, wantIds);
          assert.deepEqual(values, wantValues);
          answered.add(decoder.lmHead.lastSource);
        }
      }
      assert.equal(batched[i].position, alone[i].position);
    });
    steps += members.length;
  }
  return { steps, worst, answered: [...answered] };
}

describe('BatchDecoder', () => {
  for (const [name, make, options, k, source] of [
    ['f32, int8-screened head', () => model(4160, 64, 1), {}, 50, 'int8-screen'],
    ['f32, hot rows', () => model(700, 48, 2, 0.02), {}, 5, 'hot-rows'],
    ['f32, full head', () => model(700, 48, 3), { lmHead: 'full' as const }, 10, 'full'],
    ['q8_0', () => model(4160, 64, 4), { quantize: 'q8_0' as const }, 50, 'q8_0'],
  ] as const) {
    it(`gives every sequence the bits it gets alone (${name})`, () => {
      const { config, params } = make();
      const weights = new InferenceWeights(config, params, options);
      assert.equal(weights.headStrategy, source);
      const r = compare(weights, k);
      console.log(
        `${name}: ${r.steps} batched rows, largest logit difference from alone ${r.worst}; top-${k} by ${r.answered}`,
      );
      assert.equal(r.worst, 0);
      assert.ok(r.answered.includes(source), `the ${source} strategy answered`);
    });
  }

  it('gives the same bits on the pure-JS path', () => {
    const { config, params } = model(700, 48, 5);
    setWasmKernelsEnabled(false);
    try {
      const weights = new InferenceWeights(config, params);
      assert.equal(weights.arena, null);
      assert.equal(compare(weights, 0).worst, 0);
    } finally {
      setWasmKernelsEnabled(true);
    }
  });

  it('refuses a sequence twice in a step, a full context, other weights and too many rows', () => {
    const { config, params } = model(700, 48, 6);
    const weights = new InferenceWeights(config, params);
    const a = new InferenceSession(weights);
    const b = new InferenceSession(new InferenceWeights(config, params));
    a.prefill([1]);
    b.prefill([1]);
    const decoder = new BatchDecoder(weights, 2);
    assert.throws(() => decoder.step([a, a], [1, 2]), /appears twice/);
    assert.throws(() => decoder.step([a, b], [1, 2]), /other weights/);
    assert.throws(() => decoder.step([a, a, a], [1, 2, 3]), /batch of 3 sequences, room for 2/);
    const full = new InferenceSession(weights);
    full.prefill(Array.from({ length: config.nPositions }, (_, i) => i));
    assert.throws(() => decoder.step([full], [1]), /context full/);
    assert.throws(() => decoder.answer(1, 0, new Int32Array(1), new Float64Array(1)), /not in the last step/);
  });
});

describe('generations stepped together', () => {
  it('produce the tokens and text each produces alone (sampling, greedy, stops, budgets, joining late)', () => {
    const { config, params } = model(512, 64, 9);
    const weights = new InferenceWeights(config, params);
    const tokenizer = new Gpt2Tokenizer(smallTokenizerData());
    const jobs: { prompt: number[]; options: GenerateOptions; joinAt: number }[] = [
      {
        prompt: [10, 20, 30],
        options: {
          temperature: 1,
          topK: 50,
          topP: 0.95,
          repetitionPenalty: 1,
          maxNewTokens: 20,
          seed: 1,
          eosTokenId: null,
        },
        joinAt: 0,
      },
      {
        prompt: [5],
        options: {
          temperature: 0,
          topK: 0,
          topP: 1,
          repetitionPenalty: 1,
          maxNewTokens: 25,
          seed: 2,
          eosTokenId: null,
          stop: [' y y y'],
        },
        joinAt: 0,
      },
      {
        prompt: [7, 7],
        options: {
          temperature: 0.8,
          topK: 0,
          topP: 0.9,
          repetitionPenalty: 1.2,
          maxNewTokens: 15,
          seed: 3,
          eosTokenId: 511,
        },
        joinAt: 3,
      },
      {
        prompt: [300, 301],
        options: {
          temperature: 1,
          topK: 5,
          topP: 1,
          repetitionPenalty: 1,
          maxNewTokens: 30,
          seed: 4,
          eosTokenId: null,
          stop: ['e'],
        },
        joinAt: 6,
      },
    ];
    const alone = jobs.map((j) => generateAll(new InferenceSession(weights), tokenizer, j.prompt, j.options));
    const decoder = new BatchDecoder(weights, jobs.length);
    const live: { i: number; session: InferenceSession; gen: Generation; text: string }[] = [];
    const results: ReturnType<Generation['result']>[] = [];
    const texts: string[] = jobs.map(() => '');
    for (let step = 0; live.length > 0 || step <= 6; step++) {
      // Joining: a prompt runs on its own session; its first token is sampled like any other.
      jobs.forEach((j, i) => {
        if (j.joinAt !== step) return;
        const session = new InferenceSession(weights);
        const gen = new Generation(
          tokenizer,
          j.prompt,
          j.options,
          config.nPositions,
          new SamplerScratch(config.vocabSize),
        );
        const logits = session.next(j.prompt, gen.k, gen.topIds, gen.topValues);
        const d = gen.accept(logits, session.remaining > 0);
        live.push({ i, session, gen, text: d?.text ?? '' });
      });
      for (const l of live.filter((x) => x.gen.done)) {
        l.text += l.gen.finish()?.text ?? '';
        texts[l.i] = l.text;
        results[l.i] = l.gen.result();
      }
      const running = live.filter((x) => !x.gen.done);
      live.length = 0;
      live.push(...running);
      if (running.length === 0) continue;
      decoder.step(
        running.map((x) => x.session),
        running.map((x) => x.gen.input[0]),
      );
      running.forEach((x, r) => {
        const logits = decoder.answer(r, x.gen.k, x.gen.topIds, x.gen.topValues);
        x.text += x.gen.accept(logits, x.session.remaining > 0)?.text ?? '';
      });
    }
    assert.equal(alone[1].finishReason, 'stop', 'the stop sequence ended job 1');
    jobs.forEach((_, i) => {
      assert.deepEqual(results[i].ids, alone[i].ids, `job ${i}: tokens`);
      assert.equal(texts[i], alone[i].text, `job ${i}: streamed text`);
      assert.equal(results[i].finishReason, alone[i].finishReason, `job ${i}: finish reason`);
    });
    console.log(
      `4 generations stepped together: ${results.map((r) => r.ids.length).join(', ')} tokens, each as alone (${alone.map((r) => r.finishReason).join(', ')})`,
    );
  });
});
