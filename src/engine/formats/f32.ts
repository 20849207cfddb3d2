// The f32 weight format: a Conv1D weight [IC, OC] as the checkpoint stores it, computed in place.
import { matmulForward, matmulForwardLoops } from '../matmul.js';
import type { WasmArena } from '../wasm/runtime.js';
import { SplitCall } from '../wasm/threads.js';
import type { Linear } from './linear.js';

/** Decode products from this many multiply-adds are split between threads (below, waking them costs more). */
export const PARALLEL_MIN_MACS = 1 << 17;

export class F32Linear implements Linear {
  readonly format = 'f32';
  readonly bytes: number;
  private readonly split: SplitCall | null;
  /** The call in progress (read by the split's pieces). */
  private outPtr = 0;
  private inPtr = 0;
  private n = 0;

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
    this.split = null;
    if (!arena) return;
    const k = arena.kernels;
    const [w, b] = [weight.byteOffset, bias.byteOffset];
    this.split = new SplitCall(
      'linearRows',
      (a, from, to) => {
        a[0] = this.outPtr;
        a[1] = this.inPtr;
        a[2] = w;
        a[3] = b;
        a[4] = this.n;
        a[5] = inFeatures;
        a[6] = outFeatures;
        a[7] = from;
        a[8] = to;
        return 9;
      },
      (from, to) => k.linearRows(this.outPtr, this.inPtr, w, b, this.n, inFeatures, outFeatures, from, to),
    );
  }

  rows(out: Float32Array, inp: Float32Array, n: number): void {
    const { inFeatures: IC, outFeatures: OC, arena, split } = this;
    if (!arena || !split) {
      matmulForwardLoops(out, inp, this.weight, this.bias, n, IC, OC);
      return;
    }
    this.outPtr = out.byteOffset;
    this.inPtr = inp.byteOffset;
    this.n = n;
    // Columns in whole 16s: every piece's outputs are computed as one call would compute them.
    split.run(arena.memory, OC, 16, n * IC * OC >= PARALLEL_MIN_MACS);
  }

  matmul(out: Float32Array, inp: Float32Array, n: number): void {
    const { inFeatures: IC, outFeatures: OC } = this;
    if (!this.arena) matmulForwardLoops(out, inp, this.weight, this.bias, n, IC, OC);
    else matmulForward(out, inp, this.weight, this.bias, n, IC, OC);
  }
}
