// Proves the API's log-probabilities are the model's own distribution, as `tiny-llm eval` scores it: per-token
// agreement with the training forward pass, the top-N lists, and their alignment with text cut by stop sequences.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { GPT2 } from '../../src/engine/model.js';
import { type GenerateOptions, generate, generateAll } from '../../src/generate/generate.js';
import {
  AlignedLogprobs,
  describePrompt,
  logSumExp,
  scorePrompt,
  type TokenLogprob,
  tokenLogprob,
  topLogprobs,
} from '../../src/generate/logprobs.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';
import { evaluateLines } from '../../src/train/evaluate.js';
import { fixture } from '../helpers/fixtures.js';

let model: GPT2;
let session: InferenceSession;
let tokenizer: Gpt2Tokenizer;

before(async () => {
  // A checkpoint trained by the original Python recipe: a peaked distribution, unlike random weights.
  const loaded = await loadModelDir(fixture('seed-recipe-trained'), { requireTokenizer: true });
  model = new GPT2(loaded.config, loaded.params);
  session = new InferenceSession(new InferenceWeights(loaded.config, loaded.params));
  tokenizer = new Gpt2Tokenizer(loaded.tokenizerData!);
});

/** `tiny-llm eval`'s mean loss over one "line" of the given ids (an encoder that returns them). */
function evalLoss(ids: number[]): { loss: number; tokens: number } {
  const encoder = { encode: () => ids, eosTokenId: 50256 };
  return evaluateLines(model, encoder, 'the one line');
}

describe('log-probability arithmetic', () => {
  it('logSumExp is exact against a naive sum, and stable for large logits', () => {
    const x = Float32Array.from([1, 2, 3, -4, 0.5]);
    const naive = Math.log([...x].reduce((s, v) => s + Math.exp(v), 0));
    assert.ok(Math.abs(logSumExp(x) - naive) < 1e-12);
    const big = Float32Array.from([1000, 1000]);
    assert.ok(Math.abs(logSumExp(big) - (1000 + Math.LN2)) < 1e-9, 'no overflow');
  });

  it('topLogprobs is the n largest, most likely first, ties to the lower id, as a full sort gives', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -5, max: 5 }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: 25 }),
        (values, n) => {
          const logits = Float32Array.from(values);
          const lse = logSumExp(logits);
          const got = topLogprobs(logits, n, lse);
          const order = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b);
          assert.deepEqual(
            got.map((t) => t.id),
            order.slice(0, Math.min(n, logits.length)),
          );
          for (const t of got) assert.equal(t.logprob, logits[t.id] - lse);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('scorePrompt agrees with tiny-llm eval', () => {
  it("each echoed token's log-probability is minus eval's per-token loss (to 1e-4), and the sum is -loss × tokens", () => {
    const ids = tokenizer.encode('The pipeline builds the image, scans it, and deploys it to Cloud Run.');
    const scores = scorePrompt(session, ids, 5);
    assert.equal(scores.length, ids.length);
    assert.equal(scores[0], null, 'the first token has no log-probability');
    let worst = 0;
    let sum = 0;
    let previousTotal = 0;
    for (let k = 2; k <= ids.length; k++) {
      // eval over the first k tokens predicts k − 1 of them: the difference of totals is token k−1's loss.
      const { loss, tokens } = evalLoss(ids.slice(0, k));
      assert.equal(tokens, k - 1);
      const total = loss * tokens;
      const logprob = (scores[k - 1] as TokenLogprob).logprob;
      worst = Math.max(worst, Math.abs(logprob + (total - previousTotal)));
      previousTotal = total;
      sum += logprob;
    }
    const whole = evalLoss(ids);
    const sumError = Math.abs(sum + whole.loss * whole.tokens);
    console.log(
      `scorePrompt vs eval: ${ids.length - 1} tokens, largest per-token difference ${worst.toExponential(2)}, sum ${sum.toFixed(5)} vs ${(-whole.loss * whole.tokens).toFixed(5)} (difference ${sumError.toExponential(2)})`,
    );
    assert.ok(worst < 1e-4, `per-token difference ${worst}`);
    assert.ok(sumError < 1e-4 * ids.length, `sum difference ${sumError}`);
  });

  it('the top alternatives are those of the full log-softmax at each position', () => {
    const ids = tokenizer.encode('Terraform destroys the environment.');
    const scores = scorePrompt(session, ids, 10);
    const all = session.allLogits(ids);
    const V = model.config.vocabSize;
    for (let t = 1; t < ids.length; t++) {
      const row = all.subarray((t - 1) * V, t * V);
      const expected = tokenLogprob(row, ids[t], 10);
      const got = scores[t] as TokenLogprob;
      assert.deepEqual(
        got.top.map((x) => x.id),
        expected.top.map((x) => x.id),
      );
      assert.ok(Math.abs(got.logprob - expected.logprob) < 1e-4);
    }
  });
});

describe('generated tokens', () => {
  const options: GenerateOptions = {
    temperature: 0.9,
    topK: 50,
    topP: 0.95,
    repetitionPenalty: 1,
    maxNewTokens: 20,
    seed: 11,
    eosTokenId: null,
  };

  it('asking for log-probabilities changes no token, and each is the raw model log-probability of the token drawn', () => {
    const prompt = tokenizer.encode('User: What does the pipeline do?\nBot:');
    const plain = generateAll(session, tokenizer, prompt, options);
    const entries: TokenLogprob[] = [];
    const it = generate(session, tokenizer, prompt, { ...options, logprobs: 3 });
    for (let next = it.next(); !next.done; next = it.next())
      if (next.value.logprob) entries.push(next.value.logprob);
    assert.deepEqual(
      entries.map((e) => e.id),
      plain.ids,
    );
    const all = session.allLogits([...prompt, ...plain.ids]);
    const V = model.config.vocabSize;
    let worst = 0;
    entries.forEach((e, i) => {
      const row = all.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
      worst = Math.max(worst, Math.abs(e.logprob - (row[e.id] - logSumExp(row))));
      assert.equal(e.top.length, 3);
      assert.ok(e.top[0].logprob >= e.top[2].logprob);
    });
    console.log(
      `generated log-probabilities vs a full recompute: largest difference ${worst.toExponential(2)}`,
    );
    assert.ok(worst < 1e-4);
  });
});

describe('AlignedLogprobs', () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  /** A tokenizer whose token i is pieces[i]'s bytes. */
  const fake = (pieces: Uint8Array[]) => ({ tokenBytes: (id: number) => pieces[id] });
  const entry = (id: number): TokenLogprob => ({ id, logprob: -id, top: [] });

  it('releases an entry once the text released reaches past its start; a stop drops the rest', () => {
    const aligned = new AlignedLogprobs(fake([bytes('Hi'), bytes(' there'), bytes('\nUs'), bytes('er:')]));
    aligned.add(entry(0));
    assert.deepEqual(
      aligned.release(2).map((e) => [e.id, e.offset, e.token]),
      [[0, 0, 'Hi']],
    );
    aligned.add(entry(1));
    aligned.add(entry(2));
    // The stop matcher holds "\nUs" back: only " there" is out.
    assert.deepEqual(
      aligned.release(8).map((e) => e.id),
      [1],
    );
    aligned.add(entry(3));
    assert.deepEqual(aligned.finish(true), [], "the stop sequence's tokens are not reported");
  });

  it('a character split across tokens: the second token starts at that character, bytes kept per token', () => {
    const euro = bytes('€'); // three bytes
    const aligned = new AlignedLogprobs(fake([euro.subarray(0, 2), euro.subarray(2), bytes('x')]));
    for (const id of [0, 1, 2]) aligned.add(entry(id));
    const out = aligned.finish(false);
    assert.deepEqual(
      out.map((e) => e.offset),
      [0, 0, 1],
    );
    assert.deepEqual(out[0].bytes, [0xe2, 0x82]);
    assert.equal(out[0].token, '\uFFFD', 'an incomplete character reads as U+FFFD');
  });

  it('describePrompt: offsets into the prompt text, no log-probability for the first token', () => {
    const ids = tokenizer.encode('echo me');
    const described = describePrompt(tokenizer, ids, scorePrompt(session, ids, 2));
    assert.equal(described[0].logprob, null);
    assert.equal(described[0].top, null);
    assert.deepEqual(
      described.map((d) => d.offset),
      [0, 4],
    );
    assert.equal(described.map((d) => d.token).join(''), 'echo me');
  });
});
