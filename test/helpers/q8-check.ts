// Checks the q8_0 kernels of one kernel build against the plain-JS reference, bit for bit; run directly it
// checks this Node's relaxed-SIMD build and prints a JSON line (the q8_0 test runs it on the image's Node too).
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { inputBuffers, Q8Matrix, quantizeInputJs, quantizeQ8_0 } from '../../src/engine/formats/q8-0.js';
import { Rng } from '../../src/engine/rng.js';
import { KERNELS_RELAXED_WASM_BASE64 } from '../../src/engine/wasm/kernels-wasm.js';
import { WasmArena } from '../../src/engine/wasm/runtime.js';

export interface Q8CheckResult {
  /** Outputs compared (all equal, or the check throws). */
  compared: number;
  /** Whether the relaxed dot product ran (see WasmArena.relaxedDot). */
  relaxedDot: boolean;
}

function fail(what: string, got: number, want: number): never {
  throw new Error(`${what}: got ${got}, want ${want}`);
}

/**
 * q8Quantize, q8Gemv (with group maxima) and q8Rows against quantizeInputJs and Q8Matrix.gemvJs on odd
 * shapes, 1–5 input rows, with and without bias, and a matrix holding −128 weights; each input row must also
 * get the same bits alone as among the others.
 */
export function checkQ8Kernels(arena: WasmArena): Q8CheckResult {
  const rng = new Rng(77);
  let compared = 0;
  const k = arena.kernels;
  const alloc = (bytes: number) => arena.alloc(bytes);
  for (const [rows, cols, minus128] of [
    [4, 32, false],
    [12, 64, false],
    [260, 96, false],
    [68, 256, true],
  ] as const) {
    const w = new Float32Array(rows * cols);
    for (let i = 0; i < w.length; i++) w[i] = rng.normal() * (i % 97 === 0 ? 4 : 1);
    const blocks = quantizeQ8_0(w, rows, cols, cols, 1);
    // A −128 weight (valid Q8_0, never written by llama.cpp): the kernels must take their plain path for it.
    if (minus128) for (let r = 0; r < rows; r += 3) blocks[((r * cols) / 32) * 34 + 2 + (r % 32)] = 0x80;
    const m = new Q8Matrix(rows, cols, arena, { blocks, alloc });
    if (m.wide !== minus128) fail('wide flag', Number(m.wide), Number(minus128));
    const bias = arena.f32(arena.alloc(rows * 4), rows);
    for (let i = 0; i < rows; i++) bias[i] = rng.normal();
    for (const n of [1, 2, 5]) {
      const x = arena.f32(arena.alloc(n * cols * 4), n * cols);
      for (let i = 0; i < x.length; i++) x[i] = rng.normal() * (i % 5 === 0 ? 30 : 1);
      // A block of zeros (scale 0) and a block of tiny values (an f16-subnormal scale).
      x.fill(0, 0, 32);
      if (cols >= 64) for (let i = 32; i < 64; i++) x[i] = (rng.random() - 0.5) * 1e-6;
      const [xq, xd, xw] = inputBuffers(arena, n, cols);
      k.q8Quantize(xq, xd, xw, x.byteOffset, n, cols);
      const jq = new Int8Array(n * cols);
      const jd = new Float32Array((n * cols) / 32);
      quantizeInputJs(jq, jd, x, 0, n, cols);
      const kq = arena.i8(xq, n * cols);
      const kd = arena.f32(xd, (n * cols) / 32);
      for (let i = 0; i < jq.length; i++) if (kq[i] !== jq[i]) fail(`q8Quantize value ${i}`, kq[i], jq[i]);
      for (let i = 0; i < jd.length; i++)
        if (!Object.is(kd[i], jd[i])) fail(`q8Quantize scale ${i}`, kd[i], jd[i]);
      for (const withBias of [true, false]) {
        const want = new Float32Array(n * rows);
        m.gemvJs(want, rows, jq, jd, withBias ? bias : null, n);
        const groups = Math.ceil(rows / 64);
        const outPtr = arena.alloc(n * Math.ceil(rows / 4) * 16);
        const gmaxPtr = arena.alloc(n * groups * 4);
        k.q8Gemv(
          outPtr,
          rows,
          gmaxPtr,
          groups,
          xw,
          xd,
          m.q.byteOffset,
          m.d.byteOffset,
          withBias ? bias.byteOffset : 0,
          n,
          cols,
          0,
          m.quads,
          m.plain,
        );
        const got = arena.f32(outPtr, n * rows);
        for (let i = 0; i < want.length; i++)
          if (!Object.is(got[i], want[i])) fail(`q8Gemv ${rows}×${cols} n ${n} output ${i}`, got[i], want[i]);
        const gmax = arena.f32(gmaxPtr, n * groups);
        for (let r = 0; r < n; r++)
          for (let g = 0; g < groups; g++) {
            const top = Math.max(...want.subarray(r * rows + g * 64, r * rows + Math.min(rows, g * 64 + 64)));
            if (gmax[r * groups + g] !== top)
              fail(`q8Gemv group maximum ${g} of row ${r}`, gmax[r * groups + g], top);
          }
        compared += want.length;
        // Each row alone: the same bits.
        for (let r = 0; r < n; r++) {
          const one = arena.alloc(Math.ceil(rows / 4) * 16);
          k.q8Gemv(
            one,
            rows,
            0,
            0,
            xw + r * cols * 4,
            xd + (r * cols) / 8,
            m.q.byteOffset,
            m.d.byteOffset,
            withBias ? bias.byteOffset : 0,
            1,
            cols,
            0,
            m.quads,
            m.plain,
          );
          const alone = arena.f32(one, rows);
          for (let o = 0; o < rows; o++)
            if (!Object.is(alone[o], want[r * rows + o]))
              fail(`row ${r} alone, output ${o}`, alone[o], want[r * rows + o]);
        }
      }
      // q8Rows: any rows of the first input, the bits q8Gemv gives them (no bias).
      const ids = Int32Array.from({ length: Math.min(rows, 9) }, (_, i) => (i * 37) % rows);
      const idsPtr = arena.alloc(ids.length * 4);
      arena.i32(idsPtr, ids.length).set(ids);
      const valsPtr = arena.alloc(Math.ceil(ids.length / 4) * 16);
      k.q8Rows(valsPtr, xw, xd, m.q.byteOffset, m.d.byteOffset, idsPtr, ids.length, cols, m.plain);
      const want = new Float32Array(rows);
      m.gemvJs(want, rows, jq, jd, null, 1);
      const vals = arena.f32(valsPtr, ids.length);
      for (let i = 0; i < ids.length; i++)
        if (!Object.is(vals[i], want[ids[i]])) fail(`q8Rows row ${ids[i]}`, vals[i], want[ids[i]]);
      compared += ids.length;
    }
  }
  return { compared, relaxedDot: arena.relaxedDot };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (Number(process.versions.node.split('.')[0]) < 22)
    setFlagsFromString('--experimental-wasm-relaxed-simd');
  const arena = new WasmArena(new WebAssembly.Module(Buffer.from(KERNELS_RELAXED_WASM_BASE64, 'base64')));
  console.log(JSON.stringify({ node: process.version, ...checkQ8Kernels(arena) }));
}
