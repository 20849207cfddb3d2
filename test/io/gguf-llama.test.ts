// Our GGUF in llama.cpp itself (node-llama-cpp from bench/peers, when installed): same tokens and same greedy decodes
// as transformers (F32), and as our own q8_0 path on the same file (Q8_0).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { GPTConfig } from '../../src/engine/config.js';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { generateAll } from '../../src/generate/generate.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { exportGguf, GgmlType, loadGgufModel, readGgufHeader } from '../../src/io/gguf.js';
import { Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';
import { fixture, readJson, repoRoot } from '../helpers/fixtures.js';
import { failIfMissing, skipOutsideCi } from '../helpers/needs.js';
import { smallTokenizerData } from './small-tokenizer.js';

const peers = join(repoRoot, 'bench', 'peers');
// Skipped with the reason outside CI when bench/peers is not installed; under CI=true (.ci/run installs it) a
// missing runtime fails.
const missing = existsSync(join(peers, 'node_modules', 'node-llama-cpp'))
  ? null
  : 'node-llama-cpp is not installed in bench/peers (npm run bench:peers)';
const skip = skipOutsideCi(missing);

/** The part of node-llama-cpp's API used here (its types live in bench/peers, outside this type check). */
interface LlamaSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: number[], options: { temperature: number; yieldEogToken: boolean }): AsyncIterable<number>;
}
interface LlamaLib {
  LlamaLogLevel: { error: string };
  getLlama(options: { gpu: false; build: 'never'; logLevel: string }): Promise<{
    loadModel(options: { modelPath: string; gpuLayers: number }): Promise<{
      tokenize(text: string): number[];
      createContext(options: { contextSize: number; sequences: number; threads: number }): Promise<{
        getSequence(): LlamaSequence;
        dispose(): Promise<void>;
      }>;
      dispose(): Promise<void>;
    }>;
    dispose(): Promise<void>;
  }>;
}

interface MultiCase {
  input_ids: number[];
  greedy_24: number[];
}

/** llama.cpp's greedy continuation of `prompt` (eos kept, not stopped at). */
async function llamaGreedy(sequence: LlamaSequence, prompt: number[], n: number): Promise<number[]> {
  await sequence.clearHistory();
  const got: number[] = [];
  for await (const token of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
    got.push(token);
    if (got.length >= n) break;
  }
  return got;
}

/** Our greedy continuation, and the smallest gap between the two largest logits on the way. */
function oursGreedy(
  session: InferenceSession,
  prompt: number[],
  n: number,
): { ids: number[]; margin: number } {
  const opts = {
    temperature: 0,
    topK: 0,
    topP: 1,
    repetitionPenalty: 1,
    maxNewTokens: n,
    seed: 0,
    eosTokenId: null,
  };
  const ids = generateAll(session, null, prompt, opts).ids;
  let margin = Number.POSITIVE_INFINITY;
  session.reset();
  let logits = session.prefill(prompt);
  for (let t = 0; t < n; t++) {
    const sorted = Float32Array.from(logits).sort();
    margin = Math.min(margin, sorted[sorted.length - 1] - sorted[sorted.length - 2]);
    if (t + 1 < n) logits = session.step(ids[t]);
  }
  return { ids, margin };
}

describe('llama.cpp loads our GGUF export as a GPT-2', { skip }, () => {
  it('is installed where CI needs it', () => failIfMissing(missing));

  const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-llama-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('multi-v512: greedy 24 tokens equal transformers on every reference prompt; tokenization equals ours', {
    timeout: 120_000,
  }, async () => {
    const dir = fixture('multi-v512');
    const { config, params } = await loadModelDir(dir);
    const tokenizerData = smallTokenizerData();
    const file = join(tmp, 'multi-v512.gguf');
    await exportGguf(file, { config, params, tokenizerData });

    const entry = createRequire(join(peers, 'package.json')).resolve('node-llama-cpp');
    const lib = (await import(pathToFileURL(entry).href)) as LlamaLib;
    const llama = await lib.getLlama({ gpu: false, build: 'never', logLevel: lib.LlamaLogLevel.error });
    try {
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      // One thread: ggml's spinning worker threads crawl on a busy two-core machine.
      const context = await model.createContext({ contextSize: config.nPositions, sequences: 1, threads: 1 });
      const sequence = context.getSequence();
      const ours = new Gpt2Tokenizer(tokenizerData);
      for (const text of ['the quick brown fox', ' hello, world!\n\nnew paragraph', 'héllo wörld 123']) {
        assert.deepEqual(
          Array.from(model.tokenize(text)),
          ours.encode(text),
          `tokens of ${JSON.stringify(text)}`,
        );
      }
      const { cases } = readJson<{ cases: MultiCase[] }>(join(dir, 'reference.json'));
      for (const c of cases) {
        // yieldEogToken: a reference decode may contain eos (id 0 here); keep it instead of stopping there.
        const got = await llamaGreedy(sequence, c.input_ids, c.greedy_24.length);
        assert.deepEqual(got, c.greedy_24, `greedy continuation of ${c.input_ids.length} prompt tokens`);
      }
      console.log(`llama.cpp greedy decodes matched transformers on ${cases.length} prompts`);
      await context.dispose();
      await model.dispose();
    } finally {
      await llama.dispose();
    }
  });

  it('our Q8_0 exports: llama.cpp decodes greedily to the tokens our q8_0 path decodes from the same file', {
    timeout: 180_000,
  }, async () => {
    const multi = await loadModelDir(fixture('multi-v512'));
    // n_embd 64: every product and the embedding split into 32-blocks, so every matrix is Q8_0.
    const config: GPTConfig = { ...multi.config, nEmbd: 64, nLayer: 2, nHead: 4 };
    const rng = new Rng(6);
    const params = new Float32Array(parameterLayout(config).total);
    for (let i = 0; i < params.length; i++) params[i] = rng.normal() * 0.3;
    const models = [
      { name: 'n_embd 64, every matrix Q8_0', config, params, q8: 9 },
      { name: 'multi-v512, only the MLP c_proj Q8_0 (48 does not split into 32-blocks)', ...multi, q8: 3 },
    ];
    const { cases } = readJson<{ cases: MultiCase[] }>(join(fixture('multi-v512'), 'reference.json'));
    const entry = createRequire(join(peers, 'package.json')).resolve('node-llama-cpp');
    const lib = (await import(pathToFileURL(entry).href)) as LlamaLib;
    const llama = await lib.getLlama({ gpu: false, build: 'never', logLevel: lib.LlamaLogLevel.error });
    try {
      for (const m of models) {
        const file = join(tmp, 'q8.gguf');
        await exportGguf(file, {
          config: m.config,
          params: m.params,
          tokenizerData: smallTokenizerData(),
          quantize: 'q8_0',
        });
        const header = await readGgufHeader(file);
        assert.equal(
          header.tensors.filter((t) => t.type === GgmlType.Q8_0).length,
          m.q8,
          `${m.name}: Q8_0 tensors`,
        );
        const loaded = await loadGgufModel(file);
        assert.equal(loaded.format, 'q8_0');
        const session = new InferenceSession(new InferenceWeights(loaded.config, loaded.source));
        const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
        const context = await model.createContext({
          contextSize: m.config.nPositions,
          sequences: 1,
          threads: 1,
        });
        const sequence = context.getSequence();
        let margin = Number.POSITIVE_INFINITY;
        for (const c of cases) {
          const want = await llamaGreedy(sequence, c.input_ids, 24);
          const ours = oursGreedy(session, c.input_ids, 24);
          assert.deepEqual(
            ours.ids,
            want,
            `${m.name}: greedy continuation of ${c.input_ids.length} prompt tokens`,
          );
          margin = Math.min(margin, ours.margin);
        }
        console.log(
          `${m.name}: llama.cpp and our q8_0 path decoded the same ${cases.length}×24 tokens (smallest top-2 logit gap ${margin.toFixed(3)})`,
        );
        await context.dispose();
        await model.dispose();
      }
    } finally {
      await llama.dispose();
    }
  });
});
