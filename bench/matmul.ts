// GFLOP/s of our matrix products on the LM-head shapes, next to numpy/OpenBLAS (1 and 2 threads) in the same run.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  matmulTransposedBackwardInput,
  matmulTransposedBackwardWeight,
  matmulTransposedForward,
} from '../src/engine/matmul.js';
import { Rng } from '../src/engine/rng.js';
import { setWasmKernelsEnabled, wasmArena } from '../src/engine/wasm/runtime.js';
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
  type Operands = {
    x: Float32Array;
    w: Float32Array;
    d: Float32Array;
    logits: Float32Array;
    dx: Float32Array;
    dw: Float32Array;
  };
  const runOn = (o: Operands): Record<Product, () => void> => ({
    forward: () => matmulTransposedForward(o.logits, o.x, o.w, N, C, V),
    backwardInput: () => matmulTransposedBackwardInput(o.dx, o.d, o.w, N, C, V),
    backwardWeight: () => matmulTransposedBackwardWeight(o.dw, o.d, o.x, N, C, V),
  });
  const run = runOn({ x, w, d, logits, dx, dw });
  // The same operands placed in WebAssembly memory, as a caller that keeps its tensors there would hold them:
  // the products then run without copying anything in or out (numpy's operands are likewise its own).
  const arena = wasmArena();
  const inArena = (a: Float32Array): Float32Array => {
    if (!arena) return a;
    const view = arena.f32(arena.alloc(a.length * 4), a.length);
    view.set(a);
    return view;
  };
  const resident = arena
    ? runOn({
        x: inArena(x),
        w: inArena(w),
        d: inArena(d),
        logits: inArena(logits),
        dx: inArena(dx),
        dw: inArena(dw),
      })
    : null;
  const ours = (kernels: 'wasm' | 'js', p: Product, on = run) => {
    setWasmKernelsEnabled(kernels === 'wasm');
    try {
      const t0 = nowMs();
      on[p]();
      return FLOP / ((nowMs() - t0) / 1000) / 1e9;
    } finally {
      setWasmKernelsEnabled(true);
    }
  };
  const rows: Record<string, Record<Product, number>> = {};
  const OURS_1 = 'tiny-llm (WASM SIMD gemm, 1 thread)';
  const OURS_2 = 'tiny-llm (WASM SIMD gemm, 2 threads)';
  const RESIDENT_1 = 'tiny-llm (WASM SIMD gemm, operands in its memory, 1 thread)';
  const RESIDENT_2 = 'tiny-llm (WASM SIMD gemm, operands in its memory, 2 threads)';
  // [name, threads for the WebAssembly gemm, product → GFLOP/s]
  const columns: [string, number, (p: Product) => number][] = [
    [OURS_1, 1, (p) => ours('wasm', p)],
    [OURS_2, 2, (p) => ours('wasm', p)],
    ...(resident
      ? ([
          [RESIDENT_1, 1, (p: Product) => ours('wasm', p, resident)],
          [RESIDENT_2, 2, (p: Product) => ours('wasm', p, resident)],
        ] as [string, number, (p: Product) => number][])
      : []),
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
  for (const [threads, ourName, how] of [
    [1, OURS_1, 'operands copied in and out'],
    [2, OURS_2, 'operands copied in and out'],
    [1, RESIDENT_1, 'operands in its memory'],
    [2, RESIDENT_2, 'operands in its memory'],
  ] as const) {
    const theirs = rows[`numpy/OpenBLAS, ${threads} thread${threads > 1 ? 's' : ''}`];
    if (!theirs || !rows[ourName]) continue;
    for (const p of PRODUCTS)
      ratios[`${p}, ${threads} thread${threads > 1 ? 's' : ''}, ${how}: ours ÷ OpenBLAS`] =
        rows[ourName][p] / theirs[p];
  }
  printTable(
    'Matrix-product ratios (ours ÷ OpenBLAS at the same thread count, same run)',
    ['comparison', 'ratio'],
    Object.entries(ratios).map(([k, v]) => [k, `${(v * 100).toFixed(0)}%`]),
  );
  return { shapes: SHAPES, gflops: rows, ratios };
}
