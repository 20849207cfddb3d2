// The relaxed-SIMD build of the kernels (fused multiply-adds, what Node 22+ runs) computes what the JS paths
// compute. Node 20 needs the V8 flag for it, set here before the module is compiled.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { matmulForward, matmulTransposedForward } from '../../src/engine/matmul.js';
import { Rng } from '../../src/engine/rng.js';
import { KERNELS_RELAXED_WASM_BASE64, KERNELS_WASM_BASE64 } from '../../src/engine/wasm/kernels-wasm.js';
import { WasmArena } from '../../src/engine/wasm/runtime.js';
import { maxAbsDiff } from '../helpers/fixtures.js';
import { randomArray } from '../helpers/random.js';

if (Number(process.versions.node.split('.')[0]) < 22) setFlagsFromString('--experimental-wasm-relaxed-simd');

const relaxedBytes = Buffer.from(KERNELS_RELAXED_WASM_BASE64, 'base64');

/** Copies `a` into the arena and returns its byte offset. */
function place(arena: WasmArena, a: Float32Array): number {
  const ptr = arena.alloc(a.length * 4);
  arena.f32(ptr, a.length).set(a);
  return ptr;
}

describe('relaxed-SIMD kernels', () => {
  it('validate on this Node (with the flag on Node 20), and the plain build does not need relaxed SIMD', () => {
    assert.ok(WebAssembly.validate(relaxedBytes), 'the relaxed build does not validate');
    assert.ok(WebAssembly.validate(Buffer.from(KERNELS_WASM_BASE64, 'base64')));
  });

  it('gemm, linearRows and lmHead equal the JS loops on odd shapes; lmHeadMax and headRows equal lmHead', () => {
    const arena = new WasmArena(new WebAssembly.Module(relaxedBytes));
    const rng = new Rng(21);
    const work = arena.alloc(arena.kernels.gemmWorkBytes());
    let worstGemm = 0;
    for (const [M, N, K] of [
      [1, 1, 1],
      [5, 9, 3],
      [33, 70, 300],
      [64, 129, 64],
    ]) {
      // C[M, N] = A[M, K] · B[K, N], both row-major.
      const a = randomArray(rng, M * K);
      const b = randomArray(rng, K * N);
      const c = arena.alloc(M * N * 4);
      arena.kernels.gemm(c, place(arena, a), K, 1, place(arena, b), N, 1, M, N, K, N, false, work);
      const expected = new Float32Array(M * N);
      matmulForward(expected, a, b, null, M, K, N);
      const diff = maxAbsDiff(arena.f32(c, M * N), expected) / Math.sqrt(K);
      worstGemm = Math.max(worstGemm, diff);
      assert.ok(diff < 1e-5, `gemm ${M}×${N}×${K}: scaled diff ${diff}`);
    }
    let worstGemv = 0;
    for (const [IC, OC] of [
      [64, 192],
      [7, 17],
      [256, 64],
    ]) {
      const x = randomArray(rng, IC);
      const w = randomArray(rng, IC * OC, 0.5);
      const bias = randomArray(rng, OC);
      const out = arena.alloc(OC * 4);
      arena.kernels.linearRows(out, place(arena, x), place(arena, w), place(arena, bias), 1, IC, OC, 0, OC);
      const expected = new Float32Array(OC);
      matmulForward(expected, x, w, bias, 1, IC, OC);
      const diff = maxAbsDiff(arena.f32(out, OC), expected);
      worstGemv = Math.max(worstGemv, diff);
      assert.ok(diff < 1e-5, `linearRows ${IC}→${OC}: diff ${diff}`);
    }
    // lmHead over a head packed as [V/16][C][16].
    const V = 100;
    const C = 24;
    const blocks = Math.ceil(V / 16);
    const head = randomArray(rng, V * C);
    const packed = new Float32Array(blocks * 16 * C);
    for (let v = 0; v < V; v++) {
      for (let c = 0; c < C; c++) packed[Math.floor(v / 16) * 16 * C + c * 16 + (v % 16)] = head[v * C + c];
    }
    const x = randomArray(rng, C);
    const logits = arena.alloc(blocks * 16 * 4);
    arena.kernels.lmHead(logits, place(arena, x), place(arena, packed), blocks, C);
    const expected = new Float32Array(V);
    matmulTransposedForward(expected, x, head, 1, C, V);
    const headDiff = maxAbsDiff(arena.f32(logits, V), expected);
    console.log(
      `relaxed SIMD vs JS: gemm ${worstGemm.toExponential(2)} (÷√K), linearRows ${worstGemv.toExponential(2)}, ` +
        `lmHead ${headDiff.toExponential(2)}`,
    );
    assert.ok(headDiff < 1e-5, `lmHead diff ${headDiff}`);
    // lmHeadMax runs the same multiply-add chains: its logits equal lmHead's bit for bit, its maxima are theirs.
    const withMax = arena.alloc(Math.ceil(blocks / 4) * 64 * 4);
    const gmax = arena.alloc(Math.ceil(blocks / 4) * 4);
    arena.kernels.lmHeadMax(withMax, gmax, place(arena, x), place(arena, packed), blocks, C);
    assert.deepEqual(Array.from(arena.f32(withMax, blocks * 16)), Array.from(arena.f32(logits, blocks * 16)));
    const a = arena.f32(logits, blocks * 16);
    // headRows gathers rows into lanes and runs the same fused chain: bit-identical to lmHead's logits.
    const rows = Int32Array.from([0, 5, 17, 18, 19, 63, 99]);
    const idsPtr = arena.alloc(rows.length * 4);
    arena.i32(idsPtr, rows.length).set(rows);
    const picked = arena.alloc(8 * 4);
    arena.kernels.headRows(picked, place(arena, x), place(arena, packed), idsPtr, rows.length, C);
    assert.deepEqual(
      Array.from(arena.f32(picked, rows.length)),
      Array.from(rows, (r) => arena.f32(logits, blocks * 16)[r]),
    );
    for (let g = 0; g < Math.ceil(blocks / 4); g++)
      assert.equal(
        arena.f32(gmax, 2)[g],
        Math.max(...a.subarray(g * 64, Math.min(blocks * 16, g * 64 + 64))),
      );
  });
});
