// GFLOP/s of our matrix products on the LM-head shapes, next to numpy/OpenBLAS (1 and 2 threads) in the same run.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  matmulTransposedBackwardInput,
  matmulTransposedBackwardWeight,
  matmulTransposedForward,
} from '../src/engine/matmul.js';
import { Rng } from '../src/engine/rng.js';
import { setWasmKernelsEnabled } from '../src/engine/wasm/runtime.js';
import { enableGemmThreads, stopGemmThreads } from '../src/runtime/gemm-threads.js';
import { median, nowMs } from './lib/stats.js';
import { printTable } from './lib/table.js';

const N = 512;
const C = 64;
const V = 50257;
const FLOP = 2 * N * C * V;

export const PRODUCTS = ['forward', 'backwardInput', 'backwardWeight'] as const;
type Product = (typeof PRODUCTS)[number];
const SHAPES: Record<Product, string> = {
  forward: '[512×64]·[64×50257]',
  backwardInput: '[512×50257]·[50257×64]',
  backwardWeight: '[50257×512]·[512×64]',
};

function random(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.random() - 0.5;
  return a;
}

/** numpy's figures, or the reason they are missing. */
function numpy(threads: number, runs: number): Record<Product, number> {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const out = execFileSync('python3', [join(import.meta.dirname, 'numpy_matmul.py'), String(runs)], {
    env,
    encoding: 'utf8',
  });
  return JSON.parse(out) as Record<Product, number>;
}

export async function benchMatmul(rounds: number, skip: (what: string, why: unknown) => void) {
  const rng = new Rng(1);
  const x = random(N * C, rng); // [N, C] LM-head input
  const w = random(V * C, rng); // [V, C] token embedding
  const d = random(N * V, rng); // [N, V] logits gradient
  const logits = new Float32Array(N * V);
  const dx = new Float32Array(N * C);
  const dw = new Float32Array(V * C);
  const run: Record<Product, () => void> = {
    forward: () => matmulTransposedForward(logits, x, w, N, C, V),
    backwardInput: () => matmulTransposedBackwardInput(dx, d, w, N, C, V),
    backwardWeight: () => matmulTransposedBackwardWeight(dw, d, x, N, C, V),
  };
  const ours = (kernels: 'wasm' | 'js', p: Product) => {
    setWasmKernelsEnabled(kernels === 'wasm');
    try {
      const t0 = nowMs();
      run[p]();
      return FLOP / ((nowMs() - t0) / 1000) / 1e9;
    } finally {
      setWasmKernelsEnabled(true);
    }
  };
  const rows: Record<string, Record<Product, number>> = {};
  const OURS_1 = 'tiny-llm (WASM SIMD gemm, 1 thread)';
  const OURS_2 = 'tiny-llm (WASM SIMD gemm, 2 threads)';
  // [name, threads for the WebAssembly gemm, product → GFLOP/s]
  const columns: [string, number, (p: Product) => number][] = [
    [OURS_1, 1, (p) => ours('wasm', p)],
    [OURS_2, 2, (p) => ours('wasm', p)],
    ['tiny-llm (pure JS fallback)', 1, (p) => ours('js', p)],
  ];
  const samples = new Map<string, Record<Product, number[]>>();
  for (const [name] of columns) samples.set(name, { forward: [], backwardInput: [], backwardWeight: [] });
  const skipped = new Set<string>();
  console.log('matmul: LM-head shapes');
  try {
    for (let round = 0; round <= rounds; round++) {
      // OpenBLAS in the same rounds as ours (a child process per round and thread count: 3 timed runs each).
      for (const threads of [1, 2]) {
        const name = `numpy/OpenBLAS, ${threads} thread${threads > 1 ? 's' : ''}`;
        if (round === 0 || skipped.has(name)) continue;
        try {
          const got = numpy(threads, 3);
          if (!samples.has(name)) samples.set(name, { forward: [], backwardInput: [], backwardWeight: [] });
          for (const p of PRODUCTS) samples.get(name)![p].push(got[p]);
        } catch (e) {
          skipped.add(name);
          skip(`numpy/OpenBLAS (${threads} threads)`, e);
        }
      }
      for (const [name, threads, fn] of columns) {
        await enableGemmThreads(threads);
        for (const p of PRODUCTS) {
          const g = fn(p);
          if (round > 0) samples.get(name)![p].push(g);
        }
      }
    }
  } finally {
    await stopGemmThreads();
  }
  for (const [name, s] of samples) {
    rows[name] = {
      forward: median(s.forward),
      backwardInput: median(s.backwardInput),
      backwardWeight: median(s.backwardWeight),
    };
  }
  printTable(
    'Matrix products on the LM-head shapes (GFLOP/s, medians)',
    ['implementation', ...PRODUCTS.map((p) => `${p} ${SHAPES[p]}`)],
    Object.entries(rows).map(([name, r]) => [name, ...PRODUCTS.map((p) => r[p].toFixed(1))]),
  );
  // Ours on n threads against OpenBLAS on n threads.
  const ratios: Record<string, number> = {};
  for (const [threads, ourName] of [
    [1, OURS_1],
    [2, OURS_2],
  ] as const) {
    const theirs = rows[`numpy/OpenBLAS, ${threads} thread${threads > 1 ? 's' : ''}`];
    if (!theirs) continue;
    for (const p of PRODUCTS)
      ratios[`${p}, ${threads} thread${threads > 1 ? 's' : ''}: ours ÷ OpenBLAS`] =
        rows[ourName][p] / theirs[p];
  }
  printTable(
    'Matrix-product ratios (ours ÷ OpenBLAS at the same thread count, same run)',
    ['comparison', 'ratio'],
    Object.entries(ratios).map(([k, v]) => [k, `${(v * 100).toFixed(0)}%`]),
  );
  return { shapes: SHAPES, gflops: rows, ratios };
}
