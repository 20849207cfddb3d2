// Other threads that run kernels over this thread's WebAssembly memory: the registry the kernel drivers split work over.

/**
 * Kernels a helper thread can run, by index (the worker instantiates the same module and calls them by name).
 * Every argument is a number: byte offsets, sizes, floats, and booleans as 0/1.
 */
export const HELPER_KERNELS = ['gemm', 'gemv'] as const;
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
  start(kernel: HelperKernel, args: ArrayLike<number>): void;
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
 * Runs `parts` pieces of one kernel call: piece p > 0 on helper p − 1 (started first), piece 0 here, then waits
 * for every helper before returning or throwing (none may still write when this returns).
 */
export function runPieces(
  memory: WebAssembly.Memory,
  parts: number,
  kernel: HelperKernel,
  piece: (p: number) => ArrayLike<number> | null,
  here: (args: ArrayLike<number>) => void,
): void {
  const more = helpersOver(memory);
  const started: KernelHelper[] = [];
  let failure: unknown = null;
  try {
    for (let p = 1; p < parts && p <= more.length; p++) {
      const args = piece(p);
      if (!args) continue;
      more[p - 1].start(kernel, args);
      started.push(more[p - 1]);
    }
    const own = piece(0);
    if (own) here(own);
  } catch (e) {
    failure = e;
  }
  for (const h of started) {
    try {
      h.wait();
    } catch (e) {
      failure ??= e;
    }
  }
  if (failure) throw failure;
}
