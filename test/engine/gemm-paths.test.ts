// Proves the gemm's two ways of reading A — in place (row-major A, C at most 256 columns wide) and packed as
// splatted vectors (any other A, read along k or along i) — compute the same sums in the same order.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Rng } from '../../src/engine/rng.js';
import { KERNELS_RELAXED_WASM_BASE64, KERNELS_WASM_BASE64 } from '../../src/engine/wasm/kernels-wasm.js';
import { WasmArena } from '../../src/engine/wasm/runtime.js';
import { randomArray } from '../helpers/random.js';

/** The kernel builds this Node validates (the relaxed one needs Node 22+ or a flag on Node 20). */
function builds(): [string, WasmArena][] {
  const out: [string, WasmArena][] = [];
  for (const [name, b64] of [
    ['simd', KERNELS_WASM_BASE64],
    ['relaxed-simd', KERNELS_RELAXED_WASM_BASE64],
  ] as const) {
    const bytes = Buffer.from(b64, 'base64');
    if (WebAssembly.validate(bytes)) out.push([name, new WasmArena(new WebAssembly.Module(bytes))]);
    else console.log(`${name} build does not validate on this Node: skipped`);
  }
  return out;
}

/** [M×N] = A[M×K]·B[K×N] in doubles. */
function reference(a: Float32Array, b: Float32Array, M: number, N: number, K: number): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let k = 0; k < K; k++) {
      const av = a[i * K + k];
      for (let j = 0; j < N; j++) c[i * N + j] += av * b[k * N + j];
    }
  return c;
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

// (M, N, K): partial panels of 4 rows and 8 columns, blocks of 64 rows and 256-deep k crossed, N on both
// sides of 256 (in place up to 256 columns), K = 1.
const SHAPES: [number, number, number][] = [
  [5, 9, 3],
  [131, 70, 300],
  [67, 256, 513],
  [130, 257, 40],
  [66, 8, 1],
];

describe('gemm: A read in place and A packed', () => {
  it('give bit-identical C for A row-major and transposed, B either way, overwrite and accumulate; both near a double reference', () => {
    let worst = 0;
    for (const [name, arena] of builds()) {
      const k = arena.kernels;
      const work = arena.alloc(k.gemmWorkBytes() + 128);
      const rng = new Rng(77);
      const place = (a: Float32Array) => {
        const p = arena.alloc(a.length * 4);
        arena.f32(p, a.length).set(a);
        return p;
      };
      for (const [M, N, K] of SHAPES) {
        const a = randomArray(rng, M * K);
        const b = randomArray(rng, K * N);
        const c0 = randomArray(rng, M * N);
        const aRow = place(a);
        const aCol = place(transpose(a, M, K));
        const bRow = place(b);
        const bCol = place(transpose(b, K, N));
        const results: [string, Float32Array][] = [];
        for (const accumulate of [false, true]) {
          for (const [aName, pa, sAi, sAk] of [
            ['A row-major (in place)', aRow, K, 1],
            ['A transposed (packed)', aCol, 1, M],
          ] as const) {
            for (const [bName, pb, sBk, sBj] of [
              ['B row-major', bRow, N, 1],
              ['B transposed', bCol, 1, K],
            ] as const) {
              const c = place(c0);
              k.gemm(c, pa, sAi, sAk, pb, sBk, sBj, M, N, K, N, accumulate, work);
              results.push([`${aName}, ${bName}, accumulate ${accumulate}`, arena.f32(c, M * N).slice()]);
            }
          }
          const group = results.slice(accumulate ? 4 : 0);
          for (const [what, got] of group.slice(1)) {
            const same = got.every((v, i) => Object.is(v, group[0][1][i]));
            assert.ok(same, `${name} ${M}×${N}×${K}: ${what} differs from ${group[0][0]}`);
          }
          const ref = reference(a, b, M, N, K);
          const got = group[0][1];
          for (let i = 0; i < M * N; i++) {
            const expected = ref[i] + (accumulate ? c0[i] : 0);
            const err = Math.abs(got[i] - expected) / Math.sqrt(K);
            worst = Math.max(worst, err);
            assert.ok(err < 1e-5, `${name} ${M}×${N}×${K} accumulate ${accumulate}: error ${err} at ${i}`);
          }
        }
      }
    }
    console.log(`gemm paths vs double reference: largest error (÷√K) ${worst.toExponential(2)}`);
  });
});
