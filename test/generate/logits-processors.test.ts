// Proves OpenAI's presence/frequency penalties and logit_bias: the formula on logits, and their effect on generation.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { type GenerateOptions, generateAll } from '../../src/generate/generate.js';
import {
  applyLogitBias,
  applyPenalties,
  GeneratedCounts,
  logitBiasFrom,
  processorsActive,
} from '../../src/generate/logits-processors.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';
import { fixture } from '../helpers/fixtures.js';

let session: InferenceSession;
let tokenizer: Gpt2Tokenizer;
let prompt: number[];

before(async () => {
  const loaded = await loadModelDir(fixture('seed-recipe-trained'), { requireTokenizer: true });
  session = new InferenceSession(new InferenceWeights(loaded.config, loaded.params));
  tokenizer = new Gpt2Tokenizer(loaded.tokenizerData!);
  prompt = tokenizer.encode('User: Tell me about the pipeline.\nBot:');
});

const greedy: GenerateOptions = {
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  maxNewTokens: 30,
  seed: 1,
  eosTokenId: null,
};

/** Largest number of times one token appears in `ids`. */
function mostRepeats(ids: number[]): number {
  const counts = new Map<number, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return Math.max(...counts.values());
}

describe('logits processors on logits', () => {
  it("applyPenalties is OpenAI's formula: logit − count·frequency − (count > 0)·presence", () => {
    const logits = Float32Array.from([1, 2, 3, 4]);
    const counts = new GeneratedCounts();
    for (const id of [1, 1, 1, 3]) counts.add(id);
    applyPenalties(logits, counts, 0.5, 0.25);
    assert.deepEqual(Array.from(logits), [1, 2 - 3 * 0.25 - 0.5, 3, 4 - 0.25 - 0.5]);
  });

  it('applyLogitBias adds each bias to its token; logitBiasFrom reads the request object', () => {
    const logits = Float32Array.from([0, 0, 0]);
    applyLogitBias(logits, logitBiasFrom({ '2': 5, '0': -1.5 }));
    assert.deepEqual(Array.from(logits), [-1.5, 0, 5]);
    assert.equal(logitBiasFrom({}), null);
    assert.equal(processorsActive({ presencePenalty: 0, frequencyPenalty: 0, logitBias: null }), false);
  });
});

describe('logits processors in generation', () => {
  it('logit_bias +100 forces a token and −100 bans the greedy one', () => {
    const plain = generateAll(session, tokenizer, prompt, greedy);
    const forced = tokenizer.encode(' Terraform')[0];
    const always = generateAll(session, tokenizer, prompt, {
      ...greedy,
      logitBias: logitBiasFrom({ [forced]: 100 }),
    });
    assert.ok(
      always.ids.every((id) => id === forced),
      `every token is the forced one: ${always.ids.slice(0, 5)}`,
    );
    const banned = plain.ids[0];
    const without = generateAll(session, tokenizer, prompt, {
      ...greedy,
      logitBias: logitBiasFrom({ [banned]: -100 }),
    });
    assert.ok(!without.ids.includes(banned), 'the banned token never comes');
    assert.notDeepEqual(without.ids, plain.ids);
  });

  it('frequency and presence penalties cut repetition in greedy decoding', () => {
    const plain = generateAll(session, tokenizer, prompt, greedy);
    const frequency = generateAll(session, tokenizer, prompt, { ...greedy, frequencyPenalty: 2 });
    const presence = generateAll(session, tokenizer, prompt, { ...greedy, presencePenalty: 2 });
    console.log(
      `most repeats of one token in 30 greedy tokens: plain ${mostRepeats(plain.ids)}, frequency 2 → ${mostRepeats(frequency.ids)}, presence 2 → ${mostRepeats(presence.ids)}`,
    );
    assert.ok(mostRepeats(plain.ids) > 3, 'greedy decoding of this model repeats itself');
    assert.ok(mostRepeats(frequency.ids) < mostRepeats(plain.ids));
    assert.ok(mostRepeats(presence.ids) < mostRepeats(plain.ids));
  });

  it('penalties count generated tokens only, not the prompt', () => {
    // With nothing generated yet, the first token is the same whatever the penalty.
    const plain = generateAll(session, tokenizer, prompt, { ...greedy, maxNewTokens: 1 });
    const penalised = generateAll(session, tokenizer, prompt, {
      ...greedy,
      maxNewTokens: 1,
      presencePenalty: 2,
      frequencyPenalty: 2,
    });
    assert.deepEqual(penalised.ids, plain.ids);
  });

  it('sampled (not greedy) generation with neutral processors gives the same tokens as without them', () => {
    const sampled = { ...greedy, temperature: 1, topK: 50, topP: 0.9, seed: 5 };
    const plain = generateAll(session, tokenizer, prompt, sampled);
    const neutral = generateAll(session, tokenizer, prompt, {
      ...sampled,
      logitBias: logitBiasFrom({ 7: 0 }),
    });
    assert.deepEqual(neutral.ids, plain.ids);
  });
});
