// Inference weights (llama2.c's TransformerWeights): the parameters in the kernels' memory, each layer's
// products in their weight format, and the LM head with the strategy its shape calls for.
import { type GPTConfig, validateConfig } from '../config.js';
import { F32Linear } from '../formats/f32.js';
import type { Linear } from '../formats/linear.js';
import { F32HeadMatrix } from '../head/f32-head.js';
import { FullHead } from '../head/full.js';
import { type HotRows, HotRowsHead } from '../head/hot-rows.js';
import type { LmHead } from '../head/lm-head.js';
import { packScreenRows, SCREEN_MIN_VOCAB, ScreenedHead, type ScreenRows } from '../head/screen.js';
import { type ModelViews, modelViews, parameterLayout } from '../layout.js';
import { type WasmArena, wasmArena } from '../wasm/runtime.js';

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
  /** The packed LM head. */
  ptr: number;
  blocks: number;
  /** The parameters (the layout's flat buffer). */
  params: number;
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
}

/** Read-only weights shared by any number of sessions (e.g. one per request). */
export class InferenceWeights {
  readonly config: Readonly<GPTConfig>;
  /** The parameters as given. */
  readonly params: Float32Array;
  /** Named views of the parameters the kernels read (in WebAssembly memory when `arena` is set). */
  readonly views: ModelViews;
  /** The kernels' arena, or null on the pure-JS path. */
  readonly arena: WasmArena | null;
  readonly layers: LayerWeights[];
  readonly headMatrix: F32HeadMatrix;
  /** The hot rows of the LM head when the model has them (WebAssembly path only), see HotRows. */
  readonly hotRows: HotRows | null;
  /** The int8 screening copy of the head (large vocabularies without hot rows, WebAssembly path only). */
  readonly screenRows: ScreenRows | null;
  private readonly paramsPtr: number;

  constructor(config: GPTConfig, params: Float32Array, options: InferenceWeightsOptions = {}) {
    this.config = validateConfig(config);
    const layout = parameterLayout(this.config);
    if (params.length !== layout.total) {
      throw new Error(`parameter buffer has ${params.length} floats, the config needs ${layout.total}`);
    }
    this.params = params;
    const arena = wasmArena();
    this.arena = arena;
    const { vocabSize: V, nEmbd: C } = this.config;
    const share = options.head === 'share';
    const given = typeof options.head === 'object' ? options.head : null;
    const adopted = !!arena && !!given && arena.memory === given.memory && given.blocks === Math.ceil(V / 16);
    const alloc = (bytes: number): number => {
      const ptr = (arena as WasmArena).alloc(bytes);
      if (!share) (arena as WasmArena).freeWith(this, ptr, bytes);
      return ptr;
    };
    let inArena = params;
    if (arena && adopted && given) inArena = arena.f32(given.params, layout.total);
    else if (arena && !arena.owns(params)) {
      inArena = arena.f32(alloc(params.byteLength), params.length);
      inArena.set(params);
    }
    this.paramsPtr = arena ? inArena.byteOffset : 0;
    this.views = modelViews(layout, inArena, this.config.nLayer);
    this.layers = this.views.layers.map((l) => ({
      ln1w: l.ln1w,
      ln1b: l.ln1b,
      qkv: new F32Linear(l.qkvw, l.qkvb, C, 3 * C, arena),
      attnProj: new F32Linear(l.attprojw, l.attprojb, C, C, arena),
      ln2w: l.ln2w,
      ln2b: l.ln2b,
      fc: new F32Linear(l.fcw, l.fcb, C, 4 * C, arena),
      fcProj: new F32Linear(l.fcprojw, l.fcprojb, 4 * C, C, arena),
    }));

    let hot: { ids: Int32Array; coldMaxNorm: number } | null | undefined;
    if (!arena) {
      this.headMatrix = new F32HeadMatrix(this.views.lmHead, V, C, null, 0);
    } else if (adopted && given) {
      this.headMatrix = new F32HeadMatrix(this.views.lmHead, V, C, arena, given.ptr);
    } else {
      this.headMatrix = new F32HeadMatrix(
        this.views.lmHead,
        V,
        C,
        arena,
        alloc(F32HeadMatrix.packedBytes(V, C)),
      );
      hot = this.headMatrix.pack(true);
    }
    if (adopted && given) {
      // The sharing thread already found and packed the hot rows (and the screening head) in this memory.
      this.hotRows = given.hot;
      this.screenRows = given.screen;
    } else if (arena && hot) {
      const ptr = alloc(Math.ceil(hot.ids.length / 16) * 16 * C * 4);
      this.hotRows = this.headMatrix.packSubset(hot, ptr);
      this.screenRows = null;
    } else {
      this.hotRows = null;
      this.screenRows =
        arena && V >= SCREEN_MIN_VOCAB
          ? packScreenRows(arena, this.views.lmHead, V, C, share ? null : this)
          : null;
    }
    this.lmHeadChoice = options.lmHead ?? 'auto';
  }

  private readonly lmHeadChoice: 'auto' | 'full';

  /** The strategy new sessions' LM heads use. */
  get headStrategy(): LmHead['name'] {
    if (this.lmHeadChoice === 'full') return 'full';
    return this.hotRows ? 'hot-rows' : this.screenRows ? 'int8-screen' : 'full';
  }

  /** A session's LM head for up to `capacity` rows a step; its buffers are freed with `owner`. */
  createHead(capacity: number, owner: object): LmHead {
    const full = new FullHead(this.headMatrix, capacity, owner);
    const arena = this.arena;
    const strategy = this.headStrategy;
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
    return {
      module: arena.module,
      memory: arena.memory,
      ptr: this.headMatrix.ptr,
      blocks: this.headMatrix.blocks,
      params: this.paramsPtr,
      hot: this.hotRows,
      screen: this.screenRows,
    };
  }

  /** The packed LM head inside WebAssembly memory, or null on the pure-JS path. */
  get packedHead(): { arena: WasmArena; ptr: number; blocks: number } | null {
    const arena = this.arena;
    return arena ? { arena, ptr: this.headMatrix.ptr, blocks: this.headMatrix.blocks } : null;
  }

  /** Bytes of weights a decode step reads: every layer's products and the LM head (for the bench). */
  get decodeBytes(): number {
    let bytes = this.headMatrix.bytes;
    for (const l of this.layers) bytes += l.qkv.bytes + l.attnProj.bytes + l.fc.bytes + l.fcProj.bytes;
    return bytes;
  }
}
