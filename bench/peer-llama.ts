// Peer: llama.cpp through node-llama-cpp 3.21.1 (prebuilt CPU binary) on our own GGUF export of the model (F32 or
// Q8_0), or on the GGUF file the bench was given.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exportGguf, readGgufHeader } from '../src/io/gguf.js';
import type { DecodeRunner } from './engine.js';
import { BENCH_PROMPT, decodeLength } from './engine.js';
import type { BenchModel } from './lib/models.js';
import { nowMs } from './lib/stats.js';

const peersDir = join(import.meta.dirname, 'peers');

/** The part of node-llama-cpp's API used here (typed locally: the package lives in bench/peers only). */
interface Disposable {
  dispose(): Promise<void>;
}
interface LlamaSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: number[], options: Record<string, unknown>): AsyncGenerator<number, void, void>;
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
}
interface LlamaContext extends Disposable {
  getSequence(): LlamaSequence;
}
interface LlamaModel extends Disposable {
  createContext(options: Record<string, unknown>): Promise<LlamaContext>;
}
interface Llama extends Disposable {
  loadModel(options: Record<string, unknown>): Promise<LlamaModel>;
}
interface NodeLlamaCpp {
  getLlama(options: Record<string, unknown>): Promise<Llama>;
  LlamaLogLevel: { error: unknown };
}

let llamaBinding: Promise<Llama> | null = null;

export interface LlamaRunner extends DecodeRunner {
  /** Tokens/s of processing a prompt of `tokens` ids (no token generated). */
  prefill(tokens: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * Loads llama.cpp on the model's GGUF (`format` f32 or q8_0: our export of its weights; a GGUF model is run as
 * it is when its own format matches); `threads` CPU threads, no GPU.
 */
export async function llamaRunner(
  model: BenchModel,
  threads: number,
  format: 'f32' | 'q8_0' = 'f32',
  tokens?: number,
): Promise<LlamaRunner> {
  if (!existsSync(join(peersDir, 'node_modules', 'node-llama-cpp'))) {
    throw new Error('node-llama-cpp is not installed: run `npm run bench:peers`');
  }
  const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-bench-gguf-'));
  let file = join(tmp, `${model.name}-${format}.gguf`);
  try {
    if (model.gguf && (await ggufFormat(model.gguf)) === format) file = model.gguf;
    else {
      if (!model.tokenizerData)
        throw new Error(`${model.dir} has no tokenizer files, which the GGUF export needs`);
      if (!model.params) throw new Error(`${model.dir} holds no f32 weights to export`);
      await exportGguf(file, {
        config: model.config,
        params: model.params,
        tokenizerData: model.tokenizerData,
        quantize: format === 'q8_0' ? 'q8_0' : undefined,
      });
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const require = createRequire(join(peersDir, 'package.json'));
  const entry = require.resolve('node-llama-cpp');
  const lib = (await import(pathToFileURL(entry).href)) as NodeLlamaCpp;
  // getLlama hands out one shared binding: it is loaded once and left to process exit (disposing it twice hangs).
  llamaBinding ??= lib.getLlama({ gpu: false, build: 'never', logLevel: lib.LlamaLogLevel.error });
  const llama = await llamaBinding;
  const llm = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await llm.createContext({
    contextSize: model.config.nPositions,
    batchSize: Math.min(model.config.nPositions, 512),
    threads: { ideal: threads, min: threads },
    sequences: 1,
  });
  const sequence = context.getSequence();
  const n = decodeLength(model.config.nPositions, tokens);
  let shortRuns = 0;
  const decode = async (options: { temperature?: number; topK?: number; topP?: number; seed?: number }) => {
    await sequence.clearHistory();
    const t0 = nowMs();
    let count = 0;
    // Like our engine's runner (eosTokenId null), decode through end-of-text instead of stopping there.
    for await (const _token of sequence.evaluate([...BENCH_PROMPT], { ...options, yieldEogToken: true })) {
      if (++count >= n) break;
    }
    // Should evaluate() still end early, rate the tokens that came, not the n asked for.
    if (count < n) shortRuns++;
    return (count / (nowMs() - t0)) * 1000;
  };
  let seed = 1;
  return {
    label: `llama.cpp (node-llama-cpp 3.21.1), ${format === 'q8_0' ? 'Q8_0' : 'F32'} GGUF, ${threads} thread${threads > 1 ? 's' : ''}`,
    sampled: () => decode({ temperature: 1, topK: 50, topP: 0.95, seed: seed++ }),
    greedy: () => decode({ temperature: 0 }),
    async prefill(count: number) {
      const ids = Array.from({ length: count }, (_, i) => (i * 7919 + 13) % model.config.vocabSize);
      await sequence.clearHistory();
      const t0 = nowMs();
      await sequence.evaluateWithoutGeneratingNewTokens(ids);
      return (count / (nowMs() - t0)) * 1000;
    },
    async close() {
      if (shortRuns > 0)
        console.log(`llama.cpp: ${shortRuns} run(s) ended before ${n} tokens (rated by tokens seen)`);
      await context.dispose();
      await llm.dispose();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** 'q8_0' when a GGUF file holds Q8_0 matrices, else 'f32'. */
async function ggufFormat(file: string): Promise<'f32' | 'q8_0'> {
  const header = await readGgufHeader(file);
  return header.tensors.some((t) => t.type === 8) ? 'q8_0' : 'f32';
}
