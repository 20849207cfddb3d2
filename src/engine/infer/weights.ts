// Inference weights (llama2.c's TransformerWeights): every tensor in the kernels' memory once, each layer's
// products in their weight format (f32 or q8_0), and the LM head with the strategy its shape calls for.
import { type GPTConfig, validateConfig } from '../config.js';
import { F32Linear } from '../formats/f32.js';
import type { Linear, WeightFormat } from '../formats/linear.js';
import { Q8Linear, Q8Matrix, q8Eligible, quantizeQ8_0, type SharedQ8 } from '../formats/q8-0.js';
import { F32HeadMatrix } from '../head/f32-head.js';
import { FullHead } from '../head/full.js';
import type { HeadMatrix } from '../head/head-matrix.js';
import { type HotRows, HotRowsHead } from '../head/hot-rows.js';
import type { LmHead } from '../head/lm-head.js';
import { Q8HeadMatrix } from '../head/q8-head.js';
import { packScreenRows, SCREEN_MIN_VOCAB, ScreenedHead, type ScreenRows } from '../head/screen.js';
import { type ModelViews, modelViews, parameterLayout, type TensorSpec } from '../layout.js';
import { type WasmArena, wasmArena } from '../wasm/runtime.js';

/** One tensor as a checkpoint gives it. */
export type TensorData =
  /** float32 in the layout's shape and orientation (Conv1D weights [in, out]). */
  | { format: 'f32'; data: Float32Array }
  /**
   * GGUF Q8_0 blocks of the [out, in] matrix (a Conv1D weight transposed; the embedding as is); `readRows`, when
   * given, reads the blocks of rows [first, first + rows) into `into` (a loader that packs them a piece at a time).
   */
  | {
      format: 'q8_0';
      blocks: Uint8Array;
      readRows?(first: number, rows: number, into: Uint8Array): void;
    }
  /**
   * float32 as 'f32' gives it, read on demand: elements [start, start + count) into `into` (a loader that
   * never holds the whole float32 model, e.g. when quantising at load).
   */
  | { format: 'f32-read'; read(start: number, count: number, into: Float32Array): void };

/** A model's tensors by Hugging Face name (see layout.ts), e.g. as a GGUF file holds them. */
export interface ModelSource {
  tensor(hfName: string): TensorData;
}

/** One transformer block as the forward pass reads it. */
export interface LayerWeights {
  ln1w: Float32Array; // [C]
  ln1b: Float32Array; // [C]
  qkv: Linear; // C → 3C
  attnProj: Linear; // C → C
  ln2w: Float32Array; // [C]
  ln2b: Float32Array; // [C]
  fc: Linear; // C → 4C
  fcProj: Linear; // 4C → C
}

/**
 * Where a model's weights lie in a shared WebAssembly memory: what another thread needs to compute with them
 * as they are (no copy, no packing, no scan).
 */
export interface SharedHead {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** The LM head's weights (the packed f32 head, or the q8_0 head's int8 weights). */
  ptr: number;
  /** 16-row blocks of the packed f32 head (0 for a q8_0 head). */
  blocks: number;
  /** The float32 tensors (the layout's flat buffer when every tensor is float32). */
  params: number;
  /** The q8_0 tensors by Hugging Face name. */
  q8: Record<string, SharedQ8>;
  /** The hot rows packed in the same memory, found once by the thread that shared the weights. */
  hot: HotRows | null;
  /** The int8 screening copy of the head in the same memory. */
  screen: ScreenRows | null;
}

export interface InferenceWeightsOptions {
  /**
   * 'share': place everything for other threads too (see sharedHead); it is then never freed, as other threads
   * may read it for as long as the memory lives. A SharedHead: compute with those weights (this thread's arena
   * must be over its memory, see adoptWasmMemory) instead of copying and packing them again.
   */
  head?: 'share' | SharedHead;
  /** The LM-head strategy sessions use: 'auto' (hot rows, int8 screen or full, by the model) or 'full'. */
  lmHead?: 'auto' | 'full';
  /** 'q8_0': quantise every float32 matrix whose rows split into 32-blocks (the products and the head). */
  quantize?: 'q8_0';
}

/** The tensors a weight format applies to: the four products of each block and the token embedding/LM head. */
function isMatrix(spec: TensorSpec): boolean {
  return spec.conv1d || spec.hfName === 'transformer.wte.weight' || spec.hfName === 'lm_head.weight';
}

/** The matrix's [out, in] shape as Q8_0 stores it. */
function rowsCols(spec: TensorSpec): [number, number] {
  return spec.conv1d ? [spec.shape[1], spec.shape[0]] : [spec.shape[0], spec.shape[1]];
}

/** Floats of a row-major matrix read and quantised at a time (whole rows). */
const QUANTISE_CHUNK_FLOATS = 1 << 18;

/**
 * Quantises a float32 matrix into `m` with the kernels, from the kernels' memory: a Conv1D weight whole (it is
 * stored transposed; at most 4·C² floats), a row-major one (the embedding) a few rows at a time, so quantising
 * at load holds one piece of float32 at once.
 */
function quantiseInto(
  m: Q8Matrix,
  arena: WasmArena,
  t: Extract<TensorData, { format: 'f32' | 'f32-read' }>,
  transposed: boolean,
): void {
  const { rows, cols } = m;
  if (t.format === 'f32' && arena.owns(t.data)) {
    m.quantiseRows(t.data, 0, rows, transposed);
    return;
  }
  const chunkRows = transposed ? rows : Math.max(1, Math.floor(QUANTISE_CHUNK_FLOATS / cols));
  const floats = Math.min(rows, chunkRows) * cols;
  const scratch = arena.alloc(floats * 4);
  try {
    const into = arena.f32(scratch, floats);
    for (let r0 = 0; r0 < rows; r0 += chunkRows) {
      const n = Math.min(chunkRows, rows - r0);
      if (t.format === 'f32-read') t.read(r0 * cols, n * cols, into);
      else into.set(t.data.subarray(r0 * cols, (r0 + n) * cols));
      m.quantiseRows(into.subarray(0, n * cols), r0, n, transposed);
    }
  } finally {
    arena.free(scratch, floats * 4);
  }
}

/** Read-only weights shared by any number of sessions (e.g. one per request). */
export class InferenceWeights {
  readonly config: Readonly<GPTConfig>;
  /** The parameters as given (a flat float32 buffer), or null when the weights came from a ModelSource. */
  readonly params: Float32Array | null;
  /** Named views of the parameters (in WebAssembly memory when `arena` is set); null unless every tensor is f32. */
  readonly views: ModelViews | null;
  /** The kernels' arena, or null on the pure-JS path. */
  readonly arena: WasmArena | null;
  /** The products' format: 'q8_0' when any matrix is q8_0. */
  readonly format: WeightFormat;
  readonly wpe: Float32Array; // [maxT, C]
  readonly lnfw: Float32Array; // [C]
  readonly lnfb: Float32Array; // [C]
  readonly layers: LayerWeights[];
  readonly headMatrix: HeadMatrix;
  /** The hot rows of the LM head when the model has them (f32 head, WebAssembly path only), see HotRows. */
  readonly hotRows: HotRows | null;
  /** The int8 screening copy of an f32 head (large vocabularies without hot rows, WebAssembly path only). */
  readonly screenRows: ScreenRows | null;
  private readonly wteF32: Float32Array | null;
  private readonly wteQ8: Q8Matrix | null;
  private readonly f32Ptr: number;
  private readonly q8: Map<string, Q8Matrix>;
  private readonly lmHeadChoice: 'auto' | 'full';

  /**
   * `params`: the layout's flat float32 buffer, or a ModelSource (e.g. a GGUF file's tensors, Q8_0 kept as is);
   * null only when adopting shared weights (options.head), which then hold every tensor.
   */
  constructor(
    config: GPTConfig,
    params: Float32Array | ModelSource | null,
    options: InferenceWeightsOptions = {},
  ) {
    this.config = validateConfig(config);
    const layout = parameterLayout(this.config);
    const flat = params instanceof Float32Array ? params : null;
    if (flat && flat.length !== layout.total) {
      throw new Error(`parameter buffer has ${flat.length} floats, the config needs ${layout.total}`);
    }
    this.params = flat;
    this.lmHeadChoice = options.lmHead ?? 'auto';
    const arena = wasmArena();
    this.arena = arena;
    const { vocabSize: V, nEmbd: C } = this.config;
    const share = options.head === 'share';
    const given =
      typeof options.head === 'object' && arena?.memory === options.head.memory ? options.head : null;
    const alloc = (bytes: number): number => {
      const ptr = (arena as WasmArena).alloc(bytes);
      if (!share) (arena as WasmArena).freeWith(this, ptr, bytes);
      return ptr;
    };
    if (!params && !given)
      throw new Error('inference weights need the parameters (or shared weights to adopt)');
    const source = (spec: TensorSpec): TensorData =>
      flat
        ? { format: 'f32', data: flat.subarray(spec.offset, spec.offset + spec.size) }
        : (params as ModelSource).tensor(spec.hfName);

    // Which tensors are q8_0: given so by the source (or the sharing thread), or quantised here when asked.
    const q8Names = new Set<string>();
    for (const spec of layout.tensors) {
      if (!isMatrix(spec)) continue;
      if (given) {
        if (given.q8[spec.hfName]) q8Names.add(spec.hfName);
      } else if (flat ? false : source(spec).format === 'q8_0') q8Names.add(spec.hfName);
      else if (options.quantize === 'q8_0' && q8Eligible(rowsCols(spec)[1])) q8Names.add(spec.hfName);
    }
    this.format = q8Names.size > 0 ? 'q8_0' : 'f32';

    // The float32 tensors, in layout order, in one block: the layout's flat buffer when every tensor is f32.
    const f32Offsets = new Map<string, number>();
    let f32Total = 0;
    for (const spec of layout.tensors) {
      if (q8Names.has(spec.hfName)) continue;
      f32Offsets.set(spec.hfName, f32Total);
      f32Total += spec.size;
    }
    let block: Float32Array;
    if (given && arena) block = arena.f32(given.params, f32Total);
    else if (arena && flat && q8Names.size === 0 && arena.owns(flat)) block = flat;
    else {
      block = arena ? arena.f32(alloc(f32Total * 4), f32Total) : new Float32Array(f32Total);
      for (const spec of layout.tensors) {
        const at = f32Offsets.get(spec.hfName);
        if (at === undefined) continue;
        const t = source(spec);
        if (t.format === 'f32-read') t.read(0, spec.size, block.subarray(at, at + spec.size));
        else if (t.format !== 'f32' || t.data.length !== spec.size)
          throw new Error(`${spec.hfName}: expected ${spec.size} float32 values`);
        else block.set(t.data, at);
      }
    }
    this.f32Ptr = arena ? block.byteOffset : 0;
    const f32 = (name: string): Float32Array => {
      const at = f32Offsets.get(name);
      const spec = layout.byName.get(name);
      if (at === undefined || !spec) throw new Error(`${name} is not a float32 tensor here`);
      return block.subarray(at, at + spec.size);
    };
    this.views = q8Names.size === 0 ? modelViews(layout, block, this.config.nLayer) : null;

    this.q8 = new Map();
    for (const name of q8Names) {
      const spec = layout.byName.get(name) as TensorSpec;
      const [rows, cols] = rowsCols(spec);
      if (given && arena) {
        this.q8.set(name, new Q8Matrix(rows, cols, arena, { shared: given.q8[name] }));
        continue;
      }
      const t = source(spec);
      if (t.format === 'q8_0' && t.readRows && arena) {
        const m = new Q8Matrix(rows, cols, arena, { blocks: null, alloc });
        m.packRows(t.readRows);
        this.q8.set(name, m);
        continue;
      }
      if (t.format === 'q8_0') {
        this.q8.set(name, new Q8Matrix(rows, cols, arena, { blocks: t.blocks, alloc: arena ? alloc : null }));
        continue;
      }
      if (!arena) {
        const data = t.format === 'f32' ? t.data : new Float32Array(spec.size);
        if (t.format === 'f32-read') t.read(0, spec.size, data);
        const blocks = spec.conv1d
          ? quantizeQ8_0(data, rows, cols, 1, rows)
          : quantizeQ8_0(data, rows, cols, cols, 1);
        this.q8.set(name, new Q8Matrix(rows, cols, null, { blocks, alloc: null }));
        continue;
      }
      const m = new Q8Matrix(rows, cols, arena, { blocks: null, alloc });
      quantiseInto(m, arena, t, spec.conv1d);
      this.q8.set(name, m);
    }

    const linear = (weight: string, bias: string, IC: number, OC: number): Linear => {
      const m = this.q8.get(weight);
      return m ? new Q8Linear(m, f32(bias)) : new F32Linear(f32(weight), f32(bias), IC, OC, arena);
    };
    this.layers = [];
    for (let l = 0; l < this.config.nLayer; l++) {
      const h = `transformer.h.${l}`;
      this.layers.push({
        ln1w: f32(`${h}.ln_1.weight`),
        ln1b: f32(`${h}.ln_1.bias`),
        qkv: linear(`${h}.attn.c_attn.weight`, `${h}.attn.c_attn.bias`, C, 3 * C),
        attnProj: linear(`${h}.attn.c_proj.weight`, `${h}.attn.c_proj.bias`, C, C),
        ln2w: f32(`${h}.ln_2.weight`),
        ln2b: f32(`${h}.ln_2.bias`),
        fc: linear(`${h}.mlp.c_fc.weight`, `${h}.mlp.c_fc.bias`, C, 4 * C),
        fcProj: linear(`${h}.mlp.c_proj.weight`, `${h}.mlp.c_proj.bias`, 4 * C, C),
      });
    }
    this.wpe = f32('transformer.wpe.weight');
    this.lnfw = f32('transformer.ln_f.weight');
    this.lnfb = f32('transformer.ln_f.bias');
    this.wteQ8 = this.q8.get('transformer.wte.weight') ?? null;
    this.wteF32 = this.wteQ8 ? null : f32('transformer.wte.weight');

    const headName = layout.byName.has('lm_head.weight') ? 'lm_head.weight' : 'transformer.wte.weight';
    const headQ8 = this.q8.get(headName);
    this.hotRows = null;
    this.screenRows = null;
    if (headQ8) {
      this.headMatrix = new Q8HeadMatrix(headQ8);
      return;
    }
    const lmHead = f32(headName);
    if (!arena) {
      this.headMatrix = new F32HeadMatrix(lmHead, V, C, null, 0);
      return;
    }
    if (given) {
      this.headMatrix = new F32HeadMatrix(lmHead, V, C, arena, given.ptr);
      // The sharing thread already found and packed the hot rows (and the screening head) in this memory.
      this.hotRows = given.hot;
      this.screenRows = given.screen;
      return;
    }
    const packedBytes = F32HeadMatrix.packedBytes(V, C);
    const head = new F32HeadMatrix(lmHead, V, C, arena, packedBytes > 0 ? alloc(packedBytes) : 0);
    this.headMatrix = head;
    const hot = head.prepare();
    if (hot) this.hotRows = head.hotRowsAt(hot, alloc(head.hotBytes(hot.ids.length)));
    else if (V >= SCREEN_MIN_VOCAB)
      this.screenRows = packScreenRows(arena, lmHead, V, C, share ? null : this);
  }

  /** out[off .. off + C) = the token embedding of `id` (dequantised when it is q8_0). */
  embed(id: number, out: Float32Array, off: number): void {
    if (this.wteQ8) {
      this.wteQ8.rowInto(id, out, off);
      return;
    }
    const C = this.config.nEmbd;
    const wte = this.wteF32 as Float32Array;
    for (let c = 0; c < C; c++) out[off + c] = wte[id * C + c];
  }

  /** The strategy new sessions' LM heads use. */
  get headStrategy(): LmHead['name'] {
    if (this.headMatrix instanceof Q8HeadMatrix) return 'q8_0';
    if (this.lmHeadChoice === 'full') return 'full';
    return this.hotRows ? 'hot-rows' : this.screenRows ? 'int8-screen' : 'full';
  }

  /** A session's LM head for up to `capacity` rows a step; its buffers are freed with `owner`. */
  createHead(capacity: number, owner: object): LmHead {
    const strategy = this.headStrategy;
    const full = new FullHead(this.headMatrix, capacity, owner, strategy === 'q8_0' ? 'q8_0' : 'full');
    const arena = this.arena;
    if (arena && strategy === 'hot-rows' && this.hotRows)
      return new HotRowsHead(arena, this.hotRows, full, owner);
    if (arena && strategy === 'int8-screen' && this.screenRows)
      return new ScreenedHead(arena, this.screenRows, full, owner);
    return full;
  }

  /** The weights as another thread can adopt them (null on the pure-JS path). */
  get sharedHead(): SharedHead | null {
    const arena = this.arena;
    if (!arena) return null;
    const head = this.headMatrix;
    const q8: Record<string, SharedQ8> = {};
    for (const [name, m] of this.q8) q8[name] = m.shared;
    return {
      module: arena.module,
      memory: arena.memory,
      ptr: head instanceof F32HeadMatrix ? head.ptr : (head as Q8HeadMatrix).matrix.q.byteOffset,
      blocks: head instanceof F32HeadMatrix ? head.blocks : 0,
      params: this.f32Ptr,
      q8,
      hot: this.hotRows,
      screen: this.screenRows,
    };
  }

  /** Where the LM head lies in WebAssembly memory (its identity for sharing), or null on the pure-JS path. */
  get packedHead(): { arena: WasmArena; ptr: number; blocks: number } | null {
    const shared = this.sharedHead;
    return shared && this.arena ? { arena: this.arena, ptr: shared.ptr, blocks: shared.blocks } : null;
  }

  /** Bytes of weights a decode step reads: the products, and the LM head as its strategy reads it (for the bench). */
  get decodeBytes(): number {
    const strategy = this.headStrategy;
    const C = this.config.nEmbd;
    let bytes =
      strategy === 'int8-screen' && this.screenRows
        ? this.screenRows.groups * 64 * (this.screenRows.C2 + 4)
        : strategy === 'hot-rows' && this.hotRows
          ? this.hotRows.ids.length * C * 4
          : this.headMatrix.bytes;
    for (const l of this.layers) bytes += l.qkv.bytes + l.attnProj.bytes + l.fc.bytes + l.fcProj.bytes;
    return bytes;
  }
}
