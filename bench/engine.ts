// Our engine's figures on one model: decode tokens/s (original sampling and greedy), prefill tokens/s, step latency.
import { InferenceSession, InferenceWeights } from '../src/engine/inference.js';
import { Rng } from '../src/engine/rng.js';
import { setWasmKernelsEnabled } from '../src/engine/wasm/runtime.js';
import { generateAll, ORIGINAL_SAMPLING } from '../src/generate/generate.js';
import type { SamplingParams } from '../src/generate/sampler.js';
import type { BenchModel } from './lib/models.js';
import { nowMs } from './lib/stats.js';

/** One engine decoding the benchmark prompt to the end of the context; each call returns tokens/s. */
export interface DecodeRunner {
  label: string;
  sampled(): number | Promise<number>;
  greedy(): number | Promise<number>;
  /** Median-able extras (prefill tokens/s, step ms) measured by one call; absent for peers without them. */
  extras?(): Record<string, number>;
}

/** A short prompt shared with the peers so every engine decodes the same positions. */
export const BENCH_PROMPT = [15496, 995, 13] as const; // "Hello world."

/** New tokens per decode: to the end of the context (at most 256 positions). */
export function decodeLength(nPositions: number): number {
  return Math.min(nPositions, 256) - BENCH_PROMPT.length;
}

const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

/**
 * Our engine through generate(), either with the WebAssembly SIMD kernels or on the pure-JS fallback
 * (the kernels switched off while this runner works, so both can be measured in one process).
 */
export function engineRunner(model: BenchModel, kernels: 'wasm' | 'js'): DecodeRunner {
  const withKernels = <T>(fn: () => T): T => {
    setWasmKernelsEnabled(kernels === 'wasm');
    try {
      return fn();
    } finally {
      setWasmKernelsEnabled(true);
    }
  };
  const session = withKernels(() => new InferenceSession(new InferenceWeights(model.config, model.params)));
  const V = model.config.vocabSize;
  const n = decodeLength(model.config.nPositions);
  const decode = (sampling: SamplingParams, seed: number) =>
    withKernels(() => {
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
  const prefillTokens = Math.min(model.config.nPositions, 128);
  const rng = new Rng(7);
  const prompt = Array.from({ length: prefillTokens }, () => rng.nextUint32() % V);
  const steps = new Float64Array(n);
  let seed = 1;
  return {
    label: kernels === 'wasm' ? 'tiny-llm (WASM SIMD)' : 'tiny-llm (pure JS fallback)',
    sampled: () => decode(ORIGINAL_SAMPLING, seed++),
    greedy: () => decode(GREEDY, 0),
    extras: () =>
      withKernels(() => {
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
      }),
  };
}
