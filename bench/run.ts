// `npm run bench`: our engine against its peers in one process (medians of interleaved rounds), table + JSON.
import './lib/relaxed-simd.js';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { wasmArena, wasmKernelVariant } from '../src/engine/wasm/runtime.js';
import { type DecodeRunner, engineRunner } from './engine.js';
import { type BenchModel, loadBenchModel, locateModels } from './lib/models.js';
import { median } from './lib/stats.js';
import { printTable } from './lib/table.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    'warmup-ms': { type: 'string', default: '1500' },
    only: { type: 'string', default: 'decode,matmul,server,train' },
  },
});
const rounds = Number(args.rounds);
if (!Number.isInteger(rounds) || rounds < 1)
  throw new Error(`--rounds must be a positive integer, got ${args.rounds}`);
const sections = new Set(args.only.split(','));
/**
 * Each decode engine runs for at least this long before it is measured: V8 tiers our JavaScript and
 * WebAssembly up while they run (the first 253-token decodes of the seed model ran at ~3 100, 3 900, 7 700,
 * 8 000, 9 100 tok/s, then ~10 500), the peers' native code needs no warm-up but gets the same.
 */
const warmupMs = Number(args['warmup-ms']);
if (!Number.isFinite(warmupMs) || warmupMs < 0)
  throw new Error(`--warmup-ms must be a number >= 0, got ${args['warmup-ms']}`);

const results: Record<string, unknown> = {
  date: new Date().toISOString(),
  machine: {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memGiB: totalmem() / 2 ** 30,
    node: process.version,
    kernels: wasmKernelVariant() ?? (wasmArena() ? wasmKernelVariant() : 'none (pure JS)'),
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
  prefillTokensPerS?: number;
  stepMs?: number;
}

async function peerRunners(model: BenchModel): Promise<(DecodeRunner & { close(): Promise<void> })[]> {
  const out: (DecodeRunner & { close(): Promise<void> })[] = [];
  // ORT runs the golden ONNX for seed-tiny and our `export --format onnx` of any other model.
  const { ortRunnerFor } = await import('./peer-ort.js');
  for (const threads of [1, 2]) {
    try {
      out.push(await ortRunnerFor(model, threads));
    } catch (e) {
      skip(`onnxruntime-node (${threads} threads) on ${model.name}`, e);
    }
  }
  for (const threads of [1, 2]) {
    try {
      const { llamaRunner } = await import('./peer-llama.js');
      out.push(await llamaRunner(model, threads));
    } catch (e) {
      skip(`llama.cpp (${threads} threads) on ${model.name}`, e);
    }
  }
  return out;
}

async function benchDecode(): Promise<void> {
  const rows: DecodeRow[] = [];
  for (const located of locateModels()) {
    if (!located.ok) {
      skip(`decode on ${located.name}`, located.why);
      continue;
    }
    const model = await loadBenchModel(located.name, located.dir);
    console.log(
      `decode: ${model.name} (V ${model.config.vocabSize}, C ${model.config.nEmbd}, L ${model.config.nLayer})`,
    );
    const runners: DecodeRunner[] = [engineRunner(model, 'wasm'), engineRunner(model, 'js')];
    const peers = await peerRunners(model);
    runners.push(...peers);
    const samples = runners.map(() => ({
      sampled: [] as number[],
      greedy: [] as number[],
      extras: [] as Record<string, number>[],
    }));
    // Round 0 warms every engine up (for warmupMs each, at least one pass); later rounds alternate engines so
    // machine noise hits all of them alike.
    for (let round = 0; round <= rounds; round++) {
      process.stdout.write(
        `  round ${round}/${rounds}${round === 0 ? ` (warm-up, ${warmupMs} ms each)` : ''}\n`,
      );
      for (const [i, r] of runners.entries()) {
        const started = performance.now();
        let sampled = await r.sampled();
        let greedy = await r.greedy();
        const extras = r.extras?.();
        if (round === 0) {
          while (performance.now() - started < warmupMs) {
            sampled = await r.sampled();
            greedy = await r.greedy();
          }
          continue;
        }
        samples[i].sampled.push(sampled);
        samples[i].greedy.push(greedy);
        if (extras) samples[i].extras.push(extras);
      }
    }
    for (const p of peers) await p.close();
    for (const [i, r] of runners.entries()) {
      const s = samples[i];
      const sampled = median(s.sampled);
      const row: DecodeRow = {
        model: model.name,
        engine: r.label,
        sampledTokensPerS: sampled,
        greedyTokensPerS: median(s.greedy),
        sampledMsPerToken: 1000 / sampled,
      };
      if (s.extras.length > 0) {
        row.prefillTokensPerS = median(s.extras.map((e) => e.prefillTokensPerS));
        row.stepMs = median(s.extras.map((e) => e.stepMs));
      }
      rows.push(row);
    }
  }
  results.decode = rows;
  printTable(
    'Decode (generate() to the end of the context; medians)',
    ['model', 'engine', 'sampled tok/s', 'ms/token', 'greedy tok/s', 'prefill tok/s', 'step ms'],
    rows.map((r) => [
      r.model,
      r.engine,
      r.sampledTokensPerS.toFixed(0),
      r.sampledMsPerToken.toFixed(3),
      r.greedyTokensPerS.toFixed(0),
      r.prefillTokensPerS?.toFixed(0) ?? '',
      r.stepMs?.toFixed(3) ?? '',
    ]),
  );
  const ratios: Record<string, number> = {};
  for (const model of new Set(rows.map((r) => r.model))) {
    const ours = rows.find((r) => r.model === model && r.engine.startsWith('tiny-llm (WASM'));
    if (!ours) continue;
    for (const peer of rows.filter((r) => r.model === model && !r.engine.startsWith('tiny-llm'))) {
      ratios[`${model}: sampled vs ${peer.engine}`] = ours.sampledTokensPerS / peer.sampledTokensPerS;
      ratios[`${model}: greedy vs ${peer.engine}`] = ours.greedyTokensPerS / peer.greedyTokensPerS;
    }
  }
  results.decodeRatios = ratios;
  printTable(
    'Decode ratios (ours ÷ peer, tokens/s, same run)',
    ['comparison', 'ratio'],
    Object.entries(ratios).map(([k, v]) => [k, `${v.toFixed(2)}×`]),
  );
}

const machine = results.machine as Record<string, unknown>;
console.log(
  `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, kernels: ${machine.kernels}, ${rounds} rounds`,
);
if (sections.has('decode')) await benchDecode();
if (sections.has('matmul')) {
  const { benchMatmul } = await import('./matmul.js');
  results.matmul = await benchMatmul(rounds, skip);
}
if (sections.has('train')) {
  const { benchTrain } = await import('./train.js');
  results.train = await benchTrain(rounds, skip);
}
if (sections.has('server')) {
  const { benchServer } = await import('./server.js');
  results.server = await benchServer(rounds, skip);
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
