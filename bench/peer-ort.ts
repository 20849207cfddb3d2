// Peer: onnxruntime-node on the golden seed-tiny ONNX or on our ONNX export of any other model (explicit KV
// cache); greedy with a plain JS argmax, top-k/top-p through our JS sampler (which may use the WASM scan kernels).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/engine/rng.js';
import { argmax, SamplerScratch, sampleToken } from '../src/generate/sampler.js';
import { exportOnnx } from '../src/io/onnx/gpt2-onnx.js';
import { BENCH_PROMPT, type DecodeRunner, decodeLength } from './engine.js';
import { type BenchModel, seedTinyDir } from './lib/models.js';
import { nowMs } from './lib/stats.js';

const peersDir = join(import.meta.dirname, 'peers');

/** The part of onnxruntime-node's API used here (typed locally: the package lives in bench/peers only). */
export interface OrtTensor {
  data: unknown;
  dims: readonly number[];
}
export interface OrtSession {
  inputMetadata: unknown;
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface Ort {
  InferenceSession: {
    create(path: string | Uint8Array, options: Record<string, unknown>): Promise<OrtSession>;
  };
  Tensor: new (type: string, data: unknown, dims: number[]) => OrtTensor;
}

/** Whether `npm run bench:peers` has installed onnxruntime-node. */
export function ortInstalled(): boolean {
  return existsSync(join(peersDir, 'node_modules', 'onnxruntime-node'));
}

/** onnxruntime-node from bench/peers. */
export function loadOrt(): Ort {
  const require = createRequire(join(peersDir, 'package.json'));
  return require('onnxruntime-node') as Ort;
}

/**
 * ORT on a bench model: the golden ONNX for seed-tiny, otherwise our `export --format onnx` of the model
 * written to a temp dir (removed on close).
 */
export async function ortRunnerFor(
  model: BenchModel,
  threads: number,
  tokens?: number,
): Promise<DecodeRunner & { close(): Promise<void> }> {
  if (model.dir === seedTinyDir) {
    return ortRunner(join(seedTinyDir, 'seed-tiny-with-past.onnx'), model.config.nPositions, threads, tokens);
  }
  if (!ortInstalled()) throw new Error('onnxruntime-node is not installed: run `npm run bench:peers`');
  const params = model.params;
  if (!params) throw new Error(`${model.dir} holds no f32 weights to export to ONNX`);
  const dir = mkdtempSync(join(tmpdir(), 'tiny-llm-bench-onnx-'));
  try {
    const file = join(dir, `${model.name}.onnx`);
    await exportOnnx(file, { config: model.config, params, name: model.name });
    const runner = await ortRunner(file, model.config.nPositions, threads, tokens);
    return {
      ...runner,
      label: `${runner.label}, our ONNX export`,
      close: async () => {
        await runner.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** ORT decoding like our engine does (same prompt, same length) through the with-past graph. */
export async function ortRunner(
  onnxPath: string,
  nPositions: number,
  threads: number,
  tokens?: number,
): Promise<DecodeRunner & { close(): Promise<void> }> {
  if (!ortInstalled()) {
    throw new Error('onnxruntime-node is not installed: run `npm run bench:peers`');
  }
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(onnxPath, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const meta = session.inputMetadata as unknown as { name: string; shape: (number | string)[] }[];
  const keyShape = meta.find((m) => m.name === 'past_key')?.shape;
  if (!keyShape) throw new Error(`${onnxPath} has no past_key input`);
  const [L, , H, , D] = keyShape as number[];
  const n = decodeLength(nPositions, tokens);
  const params = { temperature: 1, topK: 50, topP: 0.95, repetitionPenalty: 1 };
  let scratch: SamplerScratch | null = null;
  const decode = async (sample: boolean, seed: number) => {
    const rng = new Rng(seed);
    let pastKey = new ort.Tensor('float32', new Float32Array(0), [L, 1, H, 0, D]);
    let pastValue = new ort.Tensor('float32', new Float32Array(0), [L, 1, H, 0, D]);
    let input: number[] = [...BENCH_PROMPT];
    const t0 = nowMs();
    for (let i = 0; i < n; i++) {
      const ids = new ort.Tensor('int64', BigInt64Array.from(input, BigInt), [1, input.length]);
      const out = await session.run({ input_ids: ids, past_key: pastKey, past_value: pastValue });
      const logitsAll = out.logits.data as Float32Array;
      const V = logitsAll.length / input.length;
      const logits = logitsAll.subarray(logitsAll.length - V);
      scratch ??= new SamplerScratch(V);
      const coin = rng.random();
      const next = sample ? sampleToken(logits, params, coin, scratch) : argmax(logits);
      pastKey = out.present_key;
      pastValue = out.present_value;
      input = [next];
    }
    return (n / (nowMs() - t0)) * 1000;
  };
  let seed = 1;
  return {
    label: `onnxruntime-node 1.30, ${threads} intra-op thread${threads > 1 ? 's' : ''}`,
    sampled: () => decode(true, seed++),
    greedy: () => decode(false, 0),
    close: () => session.release(),
  };
}
