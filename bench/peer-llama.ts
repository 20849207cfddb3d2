// Peer: llama.cpp through node-llama-cpp 3.21.1 (prebuilt CPU binary) on our own GGUF export of the model.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exportGguf } from '../src/io/gguf.js';
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

/** Loads llama.cpp on the model's GGUF export; `threads` CPU threads, no GPU. */
export async function llamaRunner(
  model: BenchModel,
  threads: number,
): Promise<DecodeRunner & { close(): Promise<void> }> {
  if (!existsSync(join(peersDir, 'node_modules', 'node-llama-cpp'))) {
    throw new Error('node-llama-cpp is not installed: run `npm run bench:peers`');
  }
  if (!model.tokenizerData)
    throw new Error(`${model.dir} has no tokenizer files, which the GGUF export needs`);
  const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-bench-gguf-'));
  const file = join(tmp, `${model.name}.gguf`);
  await exportGguf(file, { config: model.config, params: model.params, tokenizerData: model.tokenizerData });
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
  const n = decodeLength(model.config.nPositions);
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
    label: `llama.cpp (node-llama-cpp 3.21.1), ${threads} thread${threads > 1 ? 's' : ''}`,
    sampled: () => decode({ temperature: 1, topK: 50, topP: 0.95, seed: seed++ }),
    greedy: () => decode({ temperature: 0 }),
    async close() {
      if (shortRuns > 0)
        console.log(`llama.cpp: ${shortRuns} run(s) ended before ${n} tokens (rated by tokens seen)`);
      await context.dispose();
      await llm.dispose();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}
