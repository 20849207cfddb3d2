// Other threads that run kernels over this thread's WebAssembly memory: the registry the kernel drivers split work over.

/**
 * Kernels a helper thread can run, by index (the worker instantiates the same module and calls them by name).
 * Every argument is a number: byte offsets, sizes, floats, and booleans as 0/1.
 */
export const HELPER_KERNELS = [
  'gemm',
  'linearRows',
  'q8Gemv',
  'headRowMajor',
  'screenHead',
  'attendRows',
] as const;
export type HelperKernel = (typeof HELPER_KERNELS)[number];

/** Most arguments a helper job carries. */
export const HELPER_MAX_ARGS = 16;

/**
 * A thread that runs kernels over the same WebAssembly memory as this one (see src/runtime/gemm-threads.ts).
 * `start` hands it one kernel call and returns at once; `wait` blocks until that call has finished.
 */
export interface KernelHelper {
  /** Gemm scratch of its own at this byte offset (gemmWorkBytes() + 128 bytes). */
  readonly work: number;
  /** Starts kernel(args[0], …, args[count − 1]) on the helper. */
  start(kernel: HelperKernel, args: ArrayLike<number>, count?: number): void;
  wait(): void;
}

let helpers: readonly KernelHelper[] = [];
let helpersMemory: WebAssembly.Memory | null = null;

/**
 * Lets the kernel drivers split large calls between this thread and `more`, which run over `memory`.
 * Empty: back to one thread. Every split keeps each output's sum in the order one thread would use, so the
 * results are the same bits on any number of threads.
 */
export function setKernelHelpers(more: readonly KernelHelper[], memory: WebAssembly.Memory | null): void {
  helpers = more;
  helpersMemory = memory;
}

/** The helpers that share `memory` (none when they run over another one). */
export function helpersOver(memory: WebAssembly.Memory): readonly KernelHelper[] {
  return memory === helpersMemory ? helpers : [];
}

/** Threads a large product uses now (the calling one included). */
export function kernelThreads(): number {
  return helpers.length + 1;
}

/**
 * One kernel call site whose output range [0, extent) can be cut between this thread and the helpers: each piece
 * computes its own outputs completely, so the results are the same bits on any number of threads.
 */
export class SplitCall {
  private readonly args = new Float64Array(HELPER_MAX_ARGS);

  /**
   * `fill` writes the kernel's arguments for outputs [from, to) (piece p ≥ 1, for helper p − 1) into args; `own`
   * runs piece 0 on this thread. Both are made once per call site, so a call allocates nothing.
   */
  constructor(
    readonly kernel: HelperKernel,
    private readonly fill: (args: Float64Array, from: number, to: number, piece: number) => number,
    private readonly own: (from: number, to: number) => void,
  ) {}

  /**
   * Outputs [0, extent) in pieces of whole `unit`s: the helpers over `memory` take the later pieces when
   * `parallel` (the call is large enough to pay for waking them), this thread the first.
   */
  run(memory: WebAssembly.Memory, extent: number, unit: number, parallel: boolean): void {
    const more = parallel ? helpersOver(memory) : [];
    if (more.length === 0) {
      this.own(0, extent);
      return;
    }
    const parts = more.length + 1;
    const step = Math.max(unit, Math.ceil(extent / parts / unit) * unit);
    let started = 0;
    let failure: unknown = null;
    try {
      for (let p = 1; p < parts && p * step < extent; p++) {
        const count = this.fill(this.args, p * step, Math.min(extent, (p + 1) * step), p);
        more[p - 1].start(this.kernel, this.args, count);
        started++;
      }
      this.own(0, Math.min(step, extent));
    } catch (e) {
      failure = e;
    }
    for (let p = 0; p < started; p++) {
      try {
        more[p].wait();
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure) throw failure;
  }
}
