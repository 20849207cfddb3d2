// Proves that large products whose operands live outside WebAssembly memory (copied in and out in chunks
// along their largest dimension, overlapping the copies with the work) equal the same products on operands
// already in WebAssembly memory (one gemm, nothing copied) bit for bit, on one and on two threads.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  matmulBackward,
  matmulForward,
  matmulTransposedBackwardInput,
  matmulTransposedBackwardWeight,
  matmulTransposedForward,
} from '../../src/engine/matmul.js';
import { Rng } from '../../src/engine/rng.js';
import { wasmArena } from '../../src/engine/wasm/runtime.js';
import { enableGemmThreads, stopGemmThreads } from '../../src/runtime/gemm-threads.js';
import { randomArray } from '../helpers/random.js';

/** A copy of `a` in WebAssembly memory (the products then run on it in place). */
function inArena(a: Float32Array): Float32Array {
  const arena = wasmArena();
  assert.ok(arena, 'WebAssembly kernels are available');
  const view = arena.f32(arena.alloc(a.length * 4), a.length);
  view.set(a);
  return view;
}

// Rows, channels, vocabulary: a [N×V] operand of 10M floats is copied in 3 chunks (along V, or along k).
const N = 512;
const C = 64;
const V = 20011;

/** Every product whose big operand is [N×V], on fresh outputs; `place` puts operands where they live. */
function products(place: (a: Float32Array) => Float32Array) {
  const rng = new Rng(5);
  const x = place(randomArray(rng, N * C));
  const w = place(randomArray(rng, V * C));
  const bias = randomArray(rng, V);
  const d = place(randomArray(rng, N * V));
  const logits = place(new Float32Array(N * V));
  matmulTransposedForward(logits, x, w, N, C, V); // chunks along V (columns of C)
  const dx = place(randomArray(new Rng(1), N * C));
  matmulTransposedBackwardInput(dx, d, w, N, C, V); // chunks along k
  const dw = place(randomArray(new Rng(2), V * C));
  matmulTransposedBackwardWeight(dw, d, x, N, C, V); // chunks along V (rows of C), C accumulated
  const out = place(new Float32Array(N * V));
  matmulForward(out, x, w, bias, N, C, V); // bias written chunk by chunk
  const dinp = place(randomArray(new Rng(3), N * C));
  const dweight = place(randomArray(new Rng(4), C * V));
  matmulBackward(dinp, dweight, null, d, x, w, N, C, V);
  return { logits, dx, dw, out, dinp, dweight };
}

describe('gemm on operands copied in chunks', () => {
  after(() => stopGemmThreads());

  it('equals the gemm on operands already in WebAssembly memory, bit for bit, on 1 and 2 threads', async () => {
    const resident = products(inArena);
    for (const threads of [1, 2]) {
      await enableGemmThreads(threads);
      const copied = products((a) => a);
      for (const key of Object.keys(resident) as (keyof typeof resident)[]) {
        const same = resident[key].every((v, i) => Object.is(v, copied[key][i]));
        assert.ok(same, `${key} on ${threads} thread(s): chunked copies change the result`);
        assert.ok(
          copied[key].some((v) => v !== 0),
          `${key}: the product wrote something`,
        );
      }
    }
    await stopGemmThreads();
  });
});
