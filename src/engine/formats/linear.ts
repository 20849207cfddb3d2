// One linear layer of the model (a Conv1D: y = x·W + b) behind one small interface, whatever format holds W.

export type WeightFormat = 'f32' | 'q8_0';

/**
 * y[n, OC] = x[n, IC]·W + b. Inputs and outputs are the run state's buffers: views of WebAssembly memory when
 * the layer computes there (their byteOffset is the kernels' pointer), plain arrays on the pure-JS path.
 */
export interface Linear {
  readonly format: WeightFormat;
  /** IC. */
  readonly inFeatures: number;
  /** OC. */
  readonly outFeatures: number;
  /** Bytes of weights one pass over this layer reads. */
  readonly bytes: number;
  /**
   * Decode rows: each row's result depends on that row alone (the same bits whether it runs alone or among n
   * others), so a batched step gives every sequence exactly what it gets decoding alone.
   */
  rows(out: Float32Array, inp: Float32Array, n: number): void;
  /** A prompt's rows, by whatever method is fastest for n rows (equal to rows() up to float rounding). */
  matmul(out: Float32Array, inp: Float32Array, n: number): void;
}
