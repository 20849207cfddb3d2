// The LM head in q8_0: every logit from the int8 weights and the int8-quantised final row, as llama.cpp computes
// a Q8_0 model's output.
import { inputBuffers, type Q8Matrix, quantizeInputJs } from '../formats/q8-0.js';
import type { HeadMatrix } from './head-matrix.js';

export class Q8HeadMatrix implements HeadMatrix {
  readonly vocabSize: number;
  readonly nEmbd: number;
  readonly bytes: number;
  private jsInput: { xq: Int8Array; xd: Float32Array } | null = null;

  constructor(readonly matrix: Q8Matrix) {
    this.vocabSize = matrix.rows;
    this.nEmbd = matrix.cols;
    this.bytes = matrix.bytes;
  }

  get arena() {
    return this.matrix.arena;
  }

  get finite(): boolean {
    return this.matrix.finite;
  }

  logitsWasm(out: number, gmax: number, h: number): void {
    const m = this.matrix;
    const arena = m.arena!;
    const [xq, xd, xw] = inputBuffers(arena, 1, m.cols);
    arena.kernels.q8Quantize(xq, xd, xw, h, 1, m.cols);
    m.gemv(out, 0, gmax, 0, xw, xd, 0, 1);
  }

  logitsRowsWasm(out: number, stride: number, gmax: number, gstride: number, h: number, n: number): void {
    const m = this.matrix;
    const arena = m.arena!;
    const [xq, xd, xw] = inputBuffers(arena, n, m.cols);
    arena.kernels.q8Quantize(xq, xd, xw, h, n, m.cols);
    m.gemv(out, stride, gmax, gstride, xw, xd, 0, n);
  }

  rowsWasm(vals: number, h: number, ids: number, n: number): void {
    const m = this.matrix;
    const arena = m.arena!;
    const [xq, xd, xw] = inputBuffers(arena, 1, m.cols);
    arena.kernels.q8Quantize(xq, xd, xw, h, 1, m.cols);
    arena.kernels.q8Rows(vals, xw, xd, m.q.byteOffset, m.d.byteOffset, ids, n, m.cols, m.plain);
  }

  logitsJs(out: Float32Array, h: Float32Array, hOff: number): void {
    const m = this.matrix;
    this.jsInput ??= { xq: new Int8Array(m.cols), xd: new Float32Array(m.NB) };
    const { xq, xd } = this.jsInput;
    quantizeInputJs(xq, xd, h, hOff, 1, m.cols);
    m.gemvJs(out, 0, xq, xd, null, 1);
  }
}
