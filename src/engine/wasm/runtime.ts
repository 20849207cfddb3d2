// Loads the embedded WebAssembly SIMD kernels once and hands out 64-byte-aligned pieces of their shared memory.
import { KERNELS_RELAXED_WASM_BASE64, KERNELS_WASM_BASE64 } from './kernels-wasm.js';

/** The kernels' exports; every pointer is a byte offset into the arena's memory. */
export interface KernelExports {
  lmHead(out: number, x: number, w: number, blocks: number, C: number): void;
  topK(scores: number, V: number, k: number, ids: number, vals: number): void;
  argmax(scores: number, V: number): number;
  lmHeadMax(out: number, gmax: number, x: number, w: number, blocks: number, C: number): void;
  kthLargest(scores: number, n: number, k: number, work: number): number;
  screenHead(
    out: number,
    gmax: number,
    q: number,
    scale: number,
    h: number,
    hScales: number,
    n: number,
    groups: number,
    C2: number,
    outStride: number,
    gmaxStride: number,
    hStride: number,
  ): void;
  headRows(vals: number, x: number, w: number, ids: number, count: number, C: number): void;
  collectAtLeast(
    scores: number,
    gmax: number,
    groups: number,
    V: number,
    cut: number,
    ids: number,
    vals: number,
  ): number;
  gemm(
    c: number,
    a: number,
    sAi: number,
    sAk: number,
    b: number,
    sBk: number,
    sBj: number,
    M: number,
    N: number,
    K: number,
    ldc: number,
    accumulate: boolean,
    work: number,
  ): void;
  gemmWorkBytes(): number;
  transpose(dst: number, src: number, rows: number, cols: number): void;
  packHeadRows(dst: number, src: number, rows: number, C: number, norms: number): void;
  hotRows(norms: number, n: number, minRatio: number, ids: number, coldMax: number, work: number): number;
  packHeadSubset(dst: number, head: number, ids: number, count: number, C: number): void;
  q8Quantize(xq: number, xd: number, xw: number, x: number, n: number, IC: number): void;
  q8Gemv(
    out: number,
    ldo: number,
    gmax: number,
    gstride: number,
    xw: number,
    xd: number,
    w: number,
    wd: number,
    bias: number,
    n: number,
    IC: number,
    q0: number,
    q1: number,
    plain: boolean,
  ): void;
  q8Rows(
    vals: number,
    xw: number,
    xd: number,
    w: number,
    wd: number,
    ids: number,
    count: number,
    IC: number,
    plain: boolean,
  ): void;
  relaxedDotWorks(): number;
  linearRows(
    out: number,
    x: number,
    w: number,
    bias: number,
    n: number,
    IC: number,
    OC: number,
    o0: number,
    o1: number,
  ): void;
  headRowMajor(out: number, gmax: number, h: number, w: number, C: number, v0: number, v1: number): void;
  headRowMajorAt(vals: number, h: number, w: number, ids: number, count: number, C: number): void;
  rowNorms(norms: number, w: number, V: number, C: number): void;
  layerNormRows(out: number, x: number, w: number, b: number, n: number, C: number, eps: number): void;
  geluRows(out: number, x: number, count: number): void;
  addRows(x: number, y: number, count: number): void;
  attendRows(
    out: number,
    q: number,
    qStride: number,
    keys: number,
    values: number,
    t0: number,
    r0: number,
    r1: number,
    NH: number,
    hs: number,
    scale: number,
    scores: number,
  ): void;
  attendRow(
    out: number,
    q: number,
    keys: number,
    values: number,
    T: number,
    NH: number,
    hs: number,
    scale: number,
    scores: number,
  ): void;
  firstNonFinite(p: number, n: number): number;
  screenPack(
    q: number,
    scale: number,
    w: number,
    V: number,
    C: number,
    C2: number,
    tmp: number,
    stats: number,
  ): void;
  q8WeightRows(dst: number, src: number, rows: number, cols: number): void;
  q8WeightColumns(dst: number, src: number, rows: number, stride: number, cols: number, tmp: number): void;
  q8PackBlocks(q: number, d: number, blocks: number, r0: number, count: number, NB: number): number;
}

const PAGE = 65536;
const MAX_PAGES = 32768; // 2 GiB: byte offsets stay below 2^31
const ALIGN = 64;

/**
 * One kernel instance over one shared WebAssembly.Memory. Growing shared memory never detaches existing
 * views, so Float32Array views handed out earlier stay valid. Freed pieces are reused by size.
 * Several threads may each run an arena over the same memory (see adoptWasmMemory): the end of the used
 * part lives in the memory's first bytes and moves atomically; each thread reuses only what it freed.
 */
export class WasmArena {
  readonly kernels: KernelExports;
  readonly memory: WebAssembly.Memory;
  readonly module: WebAssembly.Module;
  /**
   * Whether the int8 kernels may use relaxed SIMD's dot product: the relaxed build, on an engine whose
   * instruction computes what the proposal defines (Node 20's experimental one does not).
   */
  readonly relaxedDot: boolean;
  private readonly top: Int32Array; // [0]: end of the used part, shared by every arena over this memory
  private readonly freeBySize = new Map<number, number[]>();
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private readonly finalizer = new FinalizationRegistry<[number, number]>(([ptr, bytes]) =>
    this.free(ptr, bytes),
  );
  private scratch = 0;
  private scratchBytes = 0;
  private scratchScores: Float32Array<ArrayBufferLike> = new Float32Array(0); // copy-in area for scores living outside the arena
  private scratchIds: Int32Array<ArrayBufferLike> = new Int32Array(0);
  private scratchVals: Float32Array<ArrayBufferLike> = new Float32Array(0);

  /** A new memory, or `memory` made by an arena in another thread (then both hand out pieces of it). */
  constructor(module: WebAssembly.Module, memory?: WebAssembly.Memory) {
    this.module = module;
    this.memory = memory ?? new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    if (!(this.memory.buffer instanceof SharedArrayBuffer))
      throw new TypeError('a WebAssembly arena needs a shared memory');
    this.top = new Int32Array(this.memory.buffer, 0, 1);
    // Offsets below ALIGN are never handed out: the first bytes hold the end of the used part.
    Atomics.compareExchange(this.top, 0, 0, ALIGN);
    this.buffers.add(this.memory.buffer);
    const instance = new WebAssembly.Instance(module, { env: { memory: this.memory } });
    this.kernels = instance.exports as unknown as KernelExports;
    this.relaxedDot = this.kernels.relaxedDotWorks() === 1;
  }

  /** Reserves `bytes` (rounded up to 64) and returns the offset. */
  alloc(bytes: number): number {
    const size = Math.ceil(bytes / ALIGN) * ALIGN;
    const reuse = this.freeBySize.get(size)?.pop();
    if (reuse !== undefined) return reuse;
    for (;;) {
      const ptr = Atomics.load(this.top, 0);
      const end = ptr + size;
      const have = this.memory.buffer.byteLength;
      if (end > have) {
        const pages = Math.ceil((end - have) / PAGE);
        if (have / PAGE + pages > MAX_PAGES)
          throw new RangeError(`WebAssembly arena full: ${end} bytes wanted`);
        // Another thread may grow it at the same time: pages beyond what is used cost address space only.
        this.memory.grow(pages);
      }
      if (Atomics.compareExchange(this.top, 0, ptr, end) === ptr) return ptr;
    }
  }

  free(ptr: number, bytes: number): void {
    const size = Math.ceil(bytes / ALIGN) * ALIGN;
    let list = this.freeBySize.get(size);
    if (!list) {
      list = [];
      this.freeBySize.set(size, list);
    }
    list.push(ptr);
  }

  /** Frees [ptr, ptr + bytes) once `owner` has been garbage-collected. */
  freeWith(owner: object, ptr: number, bytes: number): void {
    this.finalizer.register(owner, [ptr, bytes]);
  }

  /** A Float32Array view of `length` floats at `ptr` (valid for the arena's lifetime). */
  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.currentBuffer(), ptr, length);
  }

  f64(ptr: number, length: number): Float64Array {
    return new Float64Array(this.currentBuffer(), ptr, length);
  }

  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.currentBuffer(), ptr, length);
  }

  i16(ptr: number, length: number): Int16Array {
    return new Int16Array(this.currentBuffer(), ptr, length);
  }

  i8(ptr: number, length: number): Int8Array {
    return new Int8Array(this.currentBuffer(), ptr, length);
  }

  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.currentBuffer(), ptr, length);
  }

  /** The memory's buffer as this thread sees it now (a new object after any thread grew it), remembered for owns(). */
  private currentBuffer(): ArrayBufferLike {
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    return buffer;
  }

  /** True when `array` is a view of this arena's memory (then its byteOffset is a kernel pointer). */
  owns(array: ArrayBufferView): boolean {
    return this.buffers.has(array.buffer);
  }

  /** Sizes the shared scratch for V scores and k candidates (grows only; views are cached). */
  private ensureScratch(V: number): void {
    const floats = Math.ceil(V / 16) * 16;
    const bytes = floats * 4 * 3;
    if (bytes <= this.scratchBytes) return;
    if (this.scratchBytes > 0) this.free(this.scratch, this.scratchBytes);
    this.scratchBytes = bytes;
    this.scratch = this.alloc(bytes);
    this.scratchScores = this.f32(this.scratch, floats);
    this.scratchIds = this.i32(this.scratch + floats * 4, floats);
    this.scratchVals = this.f32(this.scratch + floats * 8, floats);
  }

  /** Byte offset of `scores` in the arena, copying it into the scratch first when it lives elsewhere. */
  private place(scores: Float32Array): number {
    this.ensureScratch(scores.length);
    if (this.owns(scores)) return scores.byteOffset;
    this.scratchScores.set(scores);
    return this.scratch;
  }

  /** Index of the largest score, lowest index on ties (same result as the JS scan). */
  argmax(scores: Float32Array): number {
    if (scores.length === 0) return 0;
    return this.kernels.argmax(this.place(scores), scores.length);
  }

  /** The k (< length) highest scores, ties to the lower id, sorted descending into ids/values. */
  topK(scores: Float32Array, k: number, ids: Int32Array, values: Float64Array): void {
    const ptr = this.place(scores);
    const idsPtr = this.scratchIds.byteOffset;
    const valsPtr = this.scratchVals.byteOffset;
    this.kernels.topK(ptr, scores.length, k, idsPtr, valsPtr);
    const outIds = this.scratchIds;
    const outVals = this.scratchVals;
    for (let i = 0; i < k; i++) {
      ids[i] = outIds[i];
      values[i] = outVals[i];
    }
  }
}

let arena: WasmArena | null | undefined;
let enabled = true;

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

let variant: 'relaxed-simd' | 'simd' | null = null;

/** The relaxed-SIMD build where this engine accepts it (fused multiply-adds), else the plain SIMD build. */
function compileKernelModule(): WebAssembly.Module | null {
  const relaxed = decodeBase64(KERNELS_RELAXED_WASM_BASE64);
  if (WebAssembly.validate(relaxed)) {
    variant = 'relaxed-simd';
    return new WebAssembly.Module(relaxed);
  }
  const plain = decodeBase64(KERNELS_WASM_BASE64);
  if (!WebAssembly.validate(plain)) return null;
  variant = 'simd';
  return new WebAssembly.Module(plain);
}

/**
 * Which kernel build this thread compiled: 'relaxed-simd' (Node 22+, or Node 20 run with
 * --experimental-wasm-relaxed-simd), 'simd', or null before the first wasmArena() call / without kernels.
 */
export function wasmKernelVariant(): 'relaxed-simd' | 'simd' | null {
  return variant;
}

/** This thread's arena, or null where WebAssembly SIMD/shared memory is unavailable or kernels are disabled. */
export function wasmArena(): WasmArena | null {
  if (!enabled) return null;
  if (arena === undefined) {
    try {
      const module = compileKernelModule();
      arena = module ? new WasmArena(module) : null;
    } catch {
      arena = null;
    }
  }
  return arena;
}

/**
 * Makes this thread's arena one over `memory`, an arena's memory from another thread, running `module` (the
 * compiled kernels, posted along: no second compile). Data placed there by the other thread (e.g. a packed
 * LM head) is then usable here without a copy. Returns the arena, or null when kernels are disabled or this
 * thread already has an arena over another memory.
 */
export function adoptWasmMemory(module: WebAssembly.Module, memory: WebAssembly.Memory): WasmArena | null {
  if (!enabled) return null;
  if (arena === undefined) {
    try {
      arena = new WasmArena(module, memory);
    } catch {
      arena = null;
    }
  }
  return arena && arena.memory === memory ? arena : null;
}

/**
 * Turns the WebAssembly kernels off (or back on) for objects created afterwards: the pure-JS paths are then
 * used, as on a runtime without WebAssembly SIMD. For tests and the benchmark's before/after figures.
 */
export function setWasmKernelsEnabled(on: boolean): void {
  enabled = on;
}
