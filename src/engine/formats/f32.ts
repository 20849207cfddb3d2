// The f32 weight format: a Conv1D weight [IC, OC] as the checkpoint stores it, computed in place.
import { matmulForward, matmulForwardLoops } from '../matmul.js';
import type { WasmArena } from '../wasm/runtime.js';
import type { Linear } from './linear.js';

export class F32Linear implements Linear {
  readonly format = 'f32';
  readonly bytes: number;

  /**
   * `weight` [IC, OC] and `bias` [OC]; with `arena`, both must be views of its memory (the kernels read them
   * in place) and so must every buffer passed to rows/matmul.
   */
  constructor(
    readonly weight: Float32Array,
    readonly bias: Float32Array,
    readonly inFeatures: number,
    readonly outFeatures: number,
    private readonly arena: WasmArena | null,
  ) {
    if (weight.length !== inFeatures * outFeatures || bias.length !== outFeatures)
      throw new RangeError(
        `f32 linear: ${weight.length} weights, ${bias.length} biases for ${inFeatures}×${outFeatures}`,
      );
    if (arena && !(arena.owns(weight) && arena.owns(bias)))
      throw new Error('f32 linear: the weights must live in the kernels’ memory');
    this.bytes = weight.byteLength;
  }

  rows(out: Float32Array, inp: Float32Array, n: number): void {
    const { inFeatures: IC, outFeatures: OC, arena } = this;
    if (!arena) {
      matmulForwardLoops(out, inp, this.weight, this.bias, n, IC, OC);
      return;
    }
    const k = arena.kernels;
    for (let r = 0; r < n; r++)
      k.gemv(
        out.byteOffset + r * OC * 4,
        inp.byteOffset + r * IC * 4,
        this.weight.byteOffset,
        this.bias.byteOffset,
        IC,
        OC,
      );
  }

  matmul(out: Float32Array, inp: Float32Array, n: number): void {
    const { inFeatures: IC, outFeatures: OC } = this;
    if (!this.arena) matmulForwardLoops(out, inp, this.weight, this.bias, n, IC, OC);
    else matmulForward(out, inp, this.weight, this.bias, n, IC, OC);
  }
}
