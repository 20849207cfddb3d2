// Our engine's figures on one model: decode tokens/s (the original's sampling and greedy) in f32 or q8_0 on one
// or two threads, prompt processing, and batched decode of several streams at once.
import { BatchDecoder, InferenceSession, InferenceWeights } from '../src/engine/inference.js';
import { Rng } from '../src/engine/rng.js';
import { setWasmKernelsEnabled } from '../src/engine/wasm/runtime.js';
import { kernelThreads } from '../src/engine/wasm/threads.js';
import { Generation, generateAll, ORIGINAL_SAMPLING } from '../src/generate/generate.js';
import { SamplerScratch, type SamplingParams } from '../src/generate/sampler.js';
import { enableGemmThreads, stopGemmThreads } from '../src/runtime/gemm-threads.js';
import type { BenchModel } from './lib/models.js';
import { nowMs } from './lib/stats.js';

/** One engine decoding the benchmark prompt; each call returns tokens/s. */
export interface DecodeRunner {
  label: string;
  sampled(): number | Promise<number>;
  greedy(): number | Promise<number>;
  /** Median-able extras (prefill tokens/s, step ms) measured by one call; absent for peers without them. */
  extras?(): Record<string, number> | Promise<Record<string, number>>;
}

/** A short prompt shared with the peers so every engine decodes the same positions. */
export const BENCH_PROMPT = [15496, 995, 13] as const; // "Hello world."

/** New tokens per decode: `tokens` when given, else to the end of the context (at most 256 positions). */
export function decodeLength(nPositions: number, tokens?: number): number {
  const full = Math.min(nPositions, 256) - BENCH_PROMPT.length;
  return tokens === undefined ? full : Math.min(tokens, nPositions - BENCH_PROMPT.length);
}

const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

/** Makes our large kernel calls use `threads` threads from now on (starting or stopping the helpers). */
export async function useThreads(threads: number): Promise<void> {
  if (kernelThreads() === threads) return;
  if (threads === 1) await stopGemmThreads();
  else await enableGemmThreads(threads);
}

export interface EngineOptions {
  kernels: 'wasm' | 'js';
  threads?: number;
  /** New tokens per decode (see decodeLength). */
  tokens?: number;
  /** The weights to run (made here from the model, f32, when absent). */
  weights?: InferenceWeights;
}

/** The inference weights of a bench model in the format asked for. */
export function benchWeights(model: BenchModel, format: 'f32' | 'q8_0'): InferenceWeights {
  const params = model.params ?? model.source;
  if (!params) throw new Error(`${model.name} has no weights`);
  if (format === 'f32' && !model.params) throw new Error(`${model.name} is Q8_0: no f32 weights to run`);
  return new InferenceWeights(model.config, params, format === 'q8_0' ? { quantize: 'q8_0' } : {});
}

/**
 * Our engine through generate(), with the WebAssembly SIMD kernels or on the pure-JS fallback (the kernels
 * switched off while this runner works, so both can be measured in one process), in f32 or q8_0, on one or
 * two threads.
 */
export function engineRunner(model: BenchModel, options: EngineOptions): DecodeRunner {
  const { kernels, threads = 1 } = options;
  const withKernels = <T>(fn: () => T): T => {
    setWasmKernelsEnabled(kernels === 'wasm');
    try {
      return fn();
    } finally {
      setWasmKernelsEnabled(true);
    }
  };
  const weights = options.weights ?? withKernels(() => benchWeights(model, 'f32'));
  const format = weights.format;
  const V = model.config.vocabSize;
  const n = decodeLength(model.config.nPositions, options.tokens);
  const prefillTokens = Math.min(model.config.nPositions, 128);
  // Room for the longer of the prompt runs: a full-context cache would hold positions nothing reaches.
  const positions = Math.max(prefillTokens, BENCH_PROMPT.length + n);
  const session = withKernels(() => new InferenceSession(weights, { positions }));
  const decode = async (sampling: SamplingParams, seed: number) => {
    await useThreads(threads);
    return withKernels(() => {
      const t0 = nowMs();
      const r = generateAll(session, null, BENCH_PROMPT, {
        ...sampling,
        maxNewTokens: n,
        eosTokenId: null,
        seed,
      });
      const ms = nowMs() - t0;
      if (r.completionTokens !== n)
        throw new Error(`decode produced ${r.completionTokens} tokens, wanted ${n}`);
      return (n / ms) * 1000;
    });
  };
  const rng = new Rng(7);
  const prompt = Array.from({ length: prefillTokens }, () => rng.nextUint32() % V);
  const steps = new Float64Array(n);
  let seed = 1;
  const what = kernels === 'wasm' ? `WASM SIMD, ${format}` : 'pure JS fallback';
  return {
    label: `tiny-llm (${what}${threads > 1 ? `, ${threads} threads` : ''})`,
    sampled: () => decode(ORIGINAL_SAMPLING, seed++),
    greedy: () => decode(GREEDY, 0),
    extras: async () => {
      await useThreads(threads);
      return withKernels(() => {
        session.reset();
        const t0 = nowMs();
        session.prefill(prompt);
        const prefillTokensPerS = (prefillTokens / (nowMs() - t0)) * 1000;
        session.reset();
        session.prefill(BENCH_PROMPT);
        let id = BENCH_PROMPT[BENCH_PROMPT.length - 1];
        for (let i = 0; i < n; i++) {
          const s0 = nowMs();
          session.step(id);
          steps[i] = nowMs() - s0;
          id = (id * 31 + 7) % V;
        }
        const sorted = Array.from(steps).sort((a, b) => a - b);
        return { prefillTokensPerS, stepMs: sorted[sorted.length >> 1] };
      });
    },
  };
}

/** Tokens/s of our prompt processing: `tokens` random ids from position 0 (the LM head on the last one only). */
export function prefillRunner(
  weights: InferenceWeights,
  threads: number,
  tokens: number,
): () => Promise<number> {
  const session = new InferenceSession(weights, { positions: tokens });
  const model = weights;
  const rng = new Rng(tokens);
  const prompt = Array.from({ length: tokens }, () => rng.nextUint32() % model.config.vocabSize);
  return async () => {
    await useThreads(threads);
    session.reset();
    const t0 = nowMs();
    session.prefill(prompt);
    return (tokens / (nowMs() - t0)) * 1000;
  };
}

/**
 * Aggregate tokens/s of `streams` generations (the original's sampling, seeds 1…streams) advancing together
 * through one BatchDecoder, `tokens` new tokens each after the benchmark prompt (prompts prefilled first,
 * outside the timing).
 */
export function batchRunner(
  weights: InferenceWeights,
  threads: number,
  streams: number,
  tokens: number,
): () => Promise<number> {
  const model = weights;
  const decoder = new BatchDecoder(weights, streams);
  const positions = BENCH_PROMPT.length + tokens;
  const sessions = Array.from({ length: streams }, () => new InferenceSession(weights, { positions }));
  const scratches = sessions.map(() => new SamplerScratch(model.config.vocabSize));
  const inputs = new Int32Array(streams);
  return async () => {
    await useThreads(threads);
    const gens = sessions.map((s, i) => {
      const g = new Generation(
        null,
        BENCH_PROMPT,
        { ...ORIGINAL_SAMPLING, maxNewTokens: tokens, eosTokenId: null, seed: i + 1 },
        positions,
        scratches[i],
      );
      s.reset();
      g.accept(s.next(BENCH_PROMPT, g.k, g.topIds, g.topValues), true);
      return g;
    });
    let produced = streams;
    const t0 = nowMs();
    while (!gens[0].done) {
      for (let i = 0; i < streams; i++) inputs[i] = gens[i].input[0];
      decoder.step(sessions, inputs, streams);
      for (let i = 0; i < streams; i++) {
        const g = gens[i];
        g.accept(decoder.answer(i, g.k, g.topIds, g.topValues), sessions[i].remaining > 0);
      }
      produced += streams;
    }
    return ((produced - streams) / (nowMs() - t0)) * 1000;
  };
}
