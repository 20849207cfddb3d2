// Our GGUF in llama.cpp itself (node-llama-cpp from bench/peers, when installed): same tokens and same greedy decodes as transformers.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { exportGguf } from '../../src/io/gguf.js';
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
        await sequence.clearHistory();
        const got: number[] = [];
        // yieldEogToken: a reference decode may contain eos (id 0 here); keep it instead of stopping there.
        for await (const token of sequence.evaluate(c.input_ids, { temperature: 0, yieldEogToken: true })) {
          got.push(token);
          if (got.length >= c.greedy_24.length) break;
        }
        assert.deepEqual(got, c.greedy_24, `greedy continuation of ${c.input_ids.length} prompt tokens`);
      }
      console.log(`llama.cpp greedy decodes matched transformers on ${cases.length} prompts`);
      await context.dispose();
      await model.dispose();
    } finally {
      await llama.dispose();
    }
  });
});
