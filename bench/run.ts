// `npm run bench [-- --model DIR|FILE.gguf|gpt2-small-shape]`: our engine against its peers in one process
// (medians of interleaved rounds): decode, prompt processing, batched decode, the memory bound; table + JSON.
import './lib/relaxed-simd.js';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { InferenceWeights } from '../src/engine/inference.js';
import { wasmArena, wasmKernelVariant } from '../src/engine/wasm/runtime.js';
import {
  batchRunner,
  benchWeights,
  type DecodeRunner,
  decodeLength,
  engineRunner,
  prefillRunner,
  useThreads,
} from './engine.js';
import { type BenchModel, loadBenchModel, locateModels, parameterCount, resolveModel } from './lib/models.js';
import { median } from './lib/stats.js';
import { printTable } from './lib/table.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    'warmup-ms': { type: 'string', default: '1500' },
    only: { type: 'string', default: 'decode,matmul,server,train' },
    model: { type: 'string' },
    tokens: { type: 'string' },
    threads: { type: 'string' },
  },
});
const rounds = Number(args.rounds);
if (!Number.isInteger(rounds) || rounds < 1)
  throw new Error(`--rounds must be a positive integer, got ${args.rounds}`);
/** Decode, prefill, batch, bound and quality run on --model (the sections asked for with --only, else these). */
const sections = new Set(
  args.only === 'decode,matmul,server,train' && args.model
    ? ['decode', 'prefill', 'batch', 'bound', 'quality']
    : args.only.split(','),
);
/**
 * Each decode engine runs for at least this long before it is measured: V8 tiers our JavaScript and
 * WebAssembly up while they run, the peers' native code needs no warm-up but gets the same.
 */
const warmupMs = Number(args['warmup-ms']);
if (!Number.isFinite(warmupMs) || warmupMs < 0)
  throw new Error(`--warmup-ms must be a number >= 0, got ${args['warmup-ms']}`);
const tokensArg = args.tokens === undefined ? undefined : Number(args.tokens);
if (tokensArg !== undefined && !(Number.isInteger(tokensArg) && tokensArg >= 1))
  throw new Error(`--tokens must be a positive integer, got ${args.tokens}`);
const threadsArg = args.threads?.split(',').map(Number);
if (threadsArg?.some((t) => !(Number.isInteger(t) && t >= 1 && t <= 2)))
  throw new Error(`--threads must list 1 and/or 2, got ${args.threads}`);
/** Models from this size are GPT-2-small-like: shorter decodes, both thread counts, no pure-JS run. */
const LARGE_PARAMS = 20e6;

const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  machine: {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memGiB: totalmem() / 2 ** 30,
    node: process.version,
    kernels: wasmKernelVariant() ?? (wasmArena() ? wasmKernelVariant() : 'none (pure JS)'),
    relaxedDotProduct: wasmArena()?.relaxedDot ?? false,
  },
  rounds,
  warmupMs,
};
const skipped: string[] = [];
const skip = (what: string, why: unknown) => {
  const text = `${what}: ${why instanceof Error ? why.message : String(why)}`;
  skipped.push(text);
  console.log(`skipped ${text}`);
};

interface DecodeRow {
  model: string;
  engine: string;
  sampledTokensPerS: number;
  greedyTokensPerS: number;
  sampledMsPerToken: number;
  /** Share of a sampled step spent beyond a greedy one (the top-50/top-p search and the draw). */
  samplingShare: number;
  prefillTokensPerS?: number;
  stepMs?: number;
}

/** What a model runs on: our weights per format, and the settings its size calls for. */
interface Plan {
  model: BenchModel;
  large: boolean;
  tokens: number | undefined;
  threads: number[];
  weights: Partial<Record<'f32' | 'q8_0', InferenceWeights>>;
}

async function plan(model: BenchModel): Promise<Plan> {
  const large = parameterCount(model.config) >= LARGE_PARAMS;
  const weights: Plan['weights'] = {};
  if (model.params) weights.f32 = benchWeights(model, 'f32');
  if (model.config.nEmbd % 32 === 0) weights.q8_0 = benchWeights(model, 'q8_0');
  return {
    model,
    large,
    tokens: tokensArg ?? (large ? 64 : undefined),
    threads: threadsArg ?? (large ? [1, 2] : [1]),
    weights,
  };
}

type Runner = DecodeRunner & { close?(): Promise<void> };

async function peerRunners(p: Plan): Promise<Runner[]> {
  const { model, tokens } = p;
  const out: Runner[] = [];
  // ORT runs the golden ONNX for seed-tiny and our `export --format onnx` of any other model.
  const { ortRunnerFor } = await import('./peer-ort.js');
  for (const threads of [1, 2]) {
    try {
      out.push(await ortRunnerFor(model, threads, tokens));
    } catch (e) {
      skip(`onnxruntime-node (${threads} threads) on ${model.name}`, e);
    }
  }
  const formats: ('f32' | 'q8_0')[] = p.weights.q8_0 ? ['f32', 'q8_0'] : ['f32'];
  for (const format of formats) {
    for (const threads of [1, 2]) {
      try {
        const { llamaRunner } = await import('./peer-llama.js');
        out.push(await llamaRunner(model, threads, format, tokens));
      } catch (e) {
        skip(`llama.cpp ${format} (${threads} threads) on ${model.name}`, e);
      }
    }
  }
  return out;
}

/** Runs every runner in rounds (round 0 warms each up for warmupMs); later rounds alternate engines. */
async function measure<T>(
  runners: T[],
  call: (r: T) => Promise<number[]>,
  label: (r: T) => string,
): Promise<number[][][]> {
  const samples = runners.map(() => [] as number[][]);
  for (let round = 0; round <= rounds; round++) {
    process.stdout.write(
      `  round ${round}/${rounds}${round === 0 ? ` (warm-up, ${warmupMs} ms each)` : ''}\n`,
    );
    for (const [i, r] of runners.entries()) {
      const started = performance.now();
      try {
        let values = await call(r);
        if (round === 0) {
          while (performance.now() - started < warmupMs) values = await call(r);
          continue;
        }
        samples[i].push(values);
      } catch (e) {
        throw new Error(`${label(r)}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
  return samples;
}

const medianOf = (s: number[][], j: number) => median(s.map((v) => v[j]));

async function benchDecode(plans: Plan[]): Promise<void> {
  const rows: DecodeRow[] = [];
  for (const p of plans) {
    const { model } = p;
    console.log(
      `decode: ${model.name} (V ${model.config.vocabSize}, C ${model.config.nEmbd}, L ${model.config.nLayer}), ${decodeLength(model.config.nPositions, p.tokens)} new tokens`,
    );
    const runners: Runner[] = [];
    for (const format of ['f32', 'q8_0'] as const) {
      const weights = p.weights[format];
      if (!weights || (format === 'q8_0' && !p.large && model.params)) continue;
      for (const threads of p.threads)
        runners.push(engineRunner(model, { kernels: 'wasm', threads, tokens: p.tokens, weights }));
    }
    if (!p.large && model.params) runners.push(engineRunner(model, { kernels: 'js', tokens: p.tokens }));
    const peers = await peerRunners(p);
    runners.push(...peers);
    const samples = await measure(
      runners,
      async (r) => {
        const sampled = await r.sampled();
        const greedy = await r.greedy();
        const extras = (await r.extras?.()) ?? {};
        return [sampled, greedy, extras.prefillTokensPerS ?? Number.NaN, extras.stepMs ?? Number.NaN];
      },
      (r) => r.label,
    );
    for (const r of peers) await r.close?.();
    await useThreads(1);
    for (const [i, r] of runners.entries()) {
      const s = samples[i];
      const sampled = medianOf(s, 0);
      const greedy = medianOf(s, 1);
      const row: DecodeRow = {
        model: model.name,
        engine: r.label,
        sampledTokensPerS: sampled,
        greedyTokensPerS: greedy,
        sampledMsPerToken: 1000 / sampled,
        samplingShare: 1 - sampled / greedy,
      };
      if (r.extras) {
        row.prefillTokensPerS = medianOf(s, 2);
        row.stepMs = medianOf(s, 3);
      }
      rows.push(row);
    }
  }
  results.decode = rows;
  printTable(
    'Decode (generate() from the benchmark prompt; medians)',
    [
      'model',
      'engine',
      'sampled tok/s',
      'ms/token',
      'greedy tok/s',
      'sampling share',
      'prefill tok/s',
      'step ms',
    ],
    rows.map((r) => [
      r.model,
      r.engine,
      r.sampledTokensPerS.toFixed(1),
      r.sampledMsPerToken.toFixed(3),
      r.greedyTokensPerS.toFixed(1),
      `${(100 * r.samplingShare).toFixed(1)} %`,
      r.prefillTokensPerS?.toFixed(0) ?? '',
      r.stepMs?.toFixed(3) ?? '',
    ]),
  );
  const ratios: Record<string, number> = {};
  const best = (model: string, prefix: string, key: 'sampledTokensPerS' | 'greedyTokensPerS') =>
    Math.max(0, ...rows.filter((r) => r.model === model && r.engine.startsWith(prefix)).map((r) => r[key]));
  for (const model of new Set(rows.map((r) => r.model))) {
    const ours = rows.find((r) => r.model === model && r.engine.startsWith('tiny-llm (WASM SIMD, f32)'));
    if (ours)
      for (const peer of rows.filter((r) => r.model === model && !r.engine.startsWith('tiny-llm'))) {
        ratios[`${model}: sampled vs ${peer.engine}`] = ours.sampledTokensPerS / peer.sampledTokensPerS;
        ratios[`${model}: greedy vs ${peer.engine}`] = ours.greedyTokensPerS / peer.greedyTokensPerS;
      }
    // Each engine at its best of 1 and 2 threads.
    for (const [ours, peer, what] of [
      ['tiny-llm (WASM SIMD, f32', 'llama.cpp (node-llama-cpp 3.21.1), F32', 'f32 vs llama.cpp F32'],
      ['tiny-llm (WASM SIMD, q8_0', 'llama.cpp (node-llama-cpp 3.21.1), Q8_0', 'q8_0 vs llama.cpp Q8_0'],
      ['tiny-llm (WASM SIMD, f32', 'onnxruntime-node', 'f32 vs onnxruntime-node'],
    ]) {
      for (const key of ['sampledTokensPerS', 'greedyTokensPerS'] as const) {
        const a = best(model, ours, key);
        const b = best(model, peer, key);
        if (a > 0 && b > 0)
          ratios[
            `${model}: ${what}, ${key === 'sampledTokensPerS' ? 'sampled' : 'greedy'}, best of 1/2 threads`
          ] = a / b;
      }
    }
  }
  results.decodeRatios = ratios;
  printTable(
    'Decode ratios (ours ÷ peer, tokens/s, same run)',
    ['comparison', 'ratio'],
    Object.entries(ratios).map(([k, v]) => [k, `${v.toFixed(2)}×`]),
  );
}

async function benchPrefill(plans: Plan[]): Promise<void> {
  const rows: { model: string; engine: string; tokens: number; tokensPerS: number }[] = [];
  for (const p of plans) {
    const { model } = p;
    for (const tokens of [128, 512].filter((t) => t <= model.config.nPositions)) {
      console.log(`prefill: ${model.name}, ${tokens}-token prompt`);
      const runners: { label: string; run: () => Promise<number>; close?: () => Promise<void> }[] = [];
      for (const format of ['f32', 'q8_0'] as const) {
        const weights = p.weights[format];
        if (!weights) continue;
        for (const threads of p.threads)
          runners.push({
            label: `tiny-llm (WASM SIMD, ${format}${threads > 1 ? `, ${threads} threads` : ''})`,
            run: prefillRunner(weights, threads, tokens),
          });
      }
      for (const format of (p.weights.q8_0 ? ['f32', 'q8_0'] : ['f32']) as ('f32' | 'q8_0')[]) {
        for (const threads of [1, 2]) {
          try {
            const { llamaRunner } = await import('./peer-llama.js');
            const l = await llamaRunner(model, threads, format, p.tokens);
            runners.push({ label: l.label, run: () => l.prefill(tokens), close: () => l.close() });
          } catch (e) {
            skip(`llama.cpp ${format} prefill (${threads} threads) on ${model.name}`, e);
          }
        }
      }
      const samples = await measure(
        runners,
        async (r) => [await r.run()],
        (r) => r.label,
      );
      for (const r of runners) await r.close?.();
      await useThreads(1);
      for (const [i, r] of runners.entries())
        rows.push({ model: model.name, engine: r.label, tokens, tokensPerS: medianOf(samples[i], 0) });
    }
  }
  results.prefill = rows;
  printTable(
    'Prompt processing (tokens/s; the LM head on the last position only; medians)',
    ['model', 'prompt', 'engine', 'tokens/s'],
    rows.map((r) => [r.model, String(r.tokens), r.engine, r.tokensPerS.toFixed(0)]),
  );
  const ratios: Record<string, number> = {};
  for (const model of new Set(rows.map((r) => r.model)))
    for (const tokens of [128, 512]) {
      const pick = (prefix: string) =>
        Math.max(
          0,
          ...rows
            .filter((r) => r.model === model && r.tokens === tokens && r.engine.startsWith(prefix))
            .map((r) => r.tokensPerS),
        );
      const a = pick('tiny-llm (WASM SIMD, f32');
      const b = pick('llama.cpp (node-llama-cpp 3.21.1), F32');
      if (a > 0 && b > 0)
        ratios[`${model}: ${tokens}-token prompt, f32 vs llama.cpp F32, best of 1/2 threads`] = a / b;
    }
  results.prefillRatios = ratios;
  printTable(
    'Prompt processing ratios (same run)',
    ['comparison', 'ratio'],
    Object.entries(ratios).map(([k, v]) => [k, `${v.toFixed(2)}×`]),
  );
}

async function benchBatch(plans: Plan[]): Promise<void> {
  const rows: { model: string; format: string; threads: number; streams: number; tokensPerS: number }[] = [];
  for (const p of plans) {
    const tokens = p.tokens ?? 64;
    console.log(`batched decode: ${p.model.name}, 1 and 8 streams, ${tokens} new tokens each`);
    const runners: { format: string; threads: number; streams: number; run: () => Promise<number> }[] = [];
    for (const format of ['f32', 'q8_0'] as const) {
      const weights = p.weights[format];
      if (!weights) continue;
      for (const threads of p.threads)
        for (const streams of [1, 8])
          runners.push({ format, threads, streams, run: batchRunner(weights, threads, streams, tokens) });
    }
    const samples = await measure(
      runners,
      async (r) => [await r.run()],
      (r) => `${r.format} ×${r.streams}`,
    );
    await useThreads(1);
    for (const [i, r] of runners.entries())
      rows.push({
        model: p.model.name,
        format: r.format,
        threads: r.threads,
        streams: r.streams,
        tokensPerS: medianOf(samples[i], 0),
      });
  }
  results.batch = rows;
  printTable(
    'Batched decode (BatchDecoder, the original sampling; aggregate tokens/s of all streams; medians)',
    ['model', 'weights', 'threads', 'streams', 'tokens/s', '÷ 1 stream'],
    rows.map((r) => {
      const one = rows.find(
        (o) => o.model === r.model && o.format === r.format && o.threads === r.threads && o.streams === 1,
      );
      return [
        r.model,
        r.format,
        String(r.threads),
        String(r.streams),
        r.tokensPerS.toFixed(1),
        one ? `${(r.tokensPerS / one.tokensPerS).toFixed(2)}×` : '',
      ];
    }),
  );
}

async function benchBound(plans: Plan[]): Promise<void> {
  const { readBandwidth } = await import('./lib/bandwidth.js');
  const bw = await readBandwidth(rounds);
  const rows: string[][] = [
    ['plain memory read (one thread, 256 MiB, WebAssembly SIMD)', `${(bw / 1e9).toFixed(1)} GB/s`, '', ''],
  ];
  for (const p of plans)
    for (const format of ['f32', 'q8_0'] as const) {
      const w = p.weights[format];
      if (!w) continue;
      const bytes = w.decodeBytes;
      rows.push([
        `${p.model.name} ${format}: weights read per token at this rate`,
        `${(bytes / 1e6).toFixed(0)} MB`,
        `${(bw / bytes).toFixed(1)} tok/s`,
        w.headStrategy,
      ]);
    }
  results.bound = { readBytesPerS: bw };
  printTable(
    'Decode bound (bytes of weights a token reads, at the plain read rate)',
    ['what', 'figure', 'tokens/s bound', 'LM head'],
    rows,
  );
}

async function loadPlans(): Promise<Plan[]> {
  const located = args.model ? [await resolveModel(args.model)] : locateModels();
  const plans: Plan[] = [];
  for (const l of located) {
    if (!l.ok) {
      skip(`${l.name}`, l.why);
      continue;
    }
    plans.push(await plan(await loadBenchModel(l.name, l.dir)));
  }
  return plans;
}

const machine = results.machine as Record<string, unknown>;
console.log(
  `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, kernels: ${machine.kernels}, ${rounds} rounds`,
);
// The servers first: they run as child processes, measured while this process holds no model and no peer.
if (sections.has('server')) {
  const { benchServer } = await import('./server.js');
  results.server = await benchServer(rounds, skip);
}
if (sections.has('server-batch')) {
  // The compiled server batching concurrent streams on --model (GPT-2 small's shape unless named).
  const { benchServerBatch } = await import('./server-batch.js');
  const located = await resolveModel(args.model ?? 'gpt2-small-shape');
  if (!located.ok) skip('server batching', located.why);
  else results.serverBatch = await benchServerBatch(await loadBenchModel(located.name, located.dir), skip);
}
const modelSections = ['decode', 'prefill', 'batch', 'bound', 'quality'].filter((s) => sections.has(s));
const plans = modelSections.length > 0 ? await loadPlans() : [];
if (sections.has('decode')) await benchDecode(plans);
if (sections.has('prefill')) await benchPrefill(plans);
if (sections.has('batch')) await benchBatch(plans);
if (sections.has('bound')) await benchBound(plans);
if (sections.has('quality')) {
  const { benchQuality } = await import('./quality.js');
  results.quality = benchQuality(plans.map((p) => p.model));
}
if (sections.has('matmul')) {
  const { benchMatmul } = await import('./matmul.js');
  results.matmul = await benchMatmul(rounds, skip);
}
if (sections.has('train')) {
  const { benchTrain } = await import('./train.js');
  results.train = await benchTrain(rounds, skip);
}
results.skipped = skipped;

const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
const file = join(dir, 'latest.json');
const tmp = `${file}.tmp-${process.pid}`;
writeFileSync(tmp, `${JSON.stringify(results, null, 2)}\n`);
renameSync(tmp, file);
console.log(`\nwrote ${file}`);
// Native peers may keep handles open; the results are written, so leave now.
process.exit(0);
