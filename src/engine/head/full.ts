// The full LM head: every logit of a row, with the k largest found from the kernels' 64-row group maxima.
import type { WasmArena } from '../wasm/runtime.js';
import { GroupTop, TOP_GROUP } from './group-top.js';
import type { HeadMatrix } from './head-matrix.js';
import type { LmHead } from './lm-head.js';

/**
 * Computes a row's logits when first asked (so the other strategies can fall back to it row by row), into
 * buffers for up to `capacity` rows allocated once.
 */
export class FullHead implements LmHead {
  private readonly arena: WasmArena | null;
  private readonly C: number;
  /** Floats per row of the logits buffer: whole 64-row groups (the kernels write them). */
  private readonly stride: number;
  private readonly logitsPtr: number;
  private readonly rowLogits: Float32Array[];
  private readonly gmaxPtr: number;
  private readonly rowGmax: Float32Array[];
  private readonly group: GroupTop | null;
  /** 1 when row r's logits (and group maxima) belong to the rows given to the last score(). */
  private readonly done: Uint8Array;
  private h: Float32Array | null = null;
  private n = 0;

  /** `name`: 'q8_0' for a q8_0 head (every logit in int8), else 'full'. */
  constructor(
    readonly matrix: HeadMatrix,
    readonly capacity: number,
    owner: object,
    readonly name: 'full' | 'q8_0' = 'full',
  ) {
    const { vocabSize: V, nEmbd: C, arena } = matrix;
    this.arena = arena;
    this.C = C;
    const groups = Math.ceil(V / TOP_GROUP);
    this.stride = groups * TOP_GROUP;
    this.done = new Uint8Array(capacity);
    this.rowLogits = [];
    this.rowGmax = [];
    if (arena) {
      const bytes = capacity * this.stride * 4;
      this.logitsPtr = arena.alloc(bytes);
      arena.freeWith(owner, this.logitsPtr, bytes);
      this.gmaxPtr = arena.alloc(capacity * groups * 4);
      arena.freeWith(owner, this.gmaxPtr, capacity * groups * 4);
      for (let r = 0; r < capacity; r++) {
        this.rowLogits.push(arena.f32(this.logitsPtr + r * this.stride * 4, V));
        this.rowGmax.push(arena.f32(this.gmaxPtr + r * groups * 4, groups));
      }
      this.group = new GroupTop(arena, V, owner);
    } else {
      this.logitsPtr = 0;
      this.gmaxPtr = 0;
      for (let r = 0; r < capacity; r++) this.rowLogits.push(new Float32Array(V));
      this.group = null;
    }
  }

  get topLimit(): number {
    return this.group ? this.group.groups : 0;
  }

  get lastCandidates(): number {
    return this.group ? this.group.lastCandidates : 0;
  }

  lastSource: LmHead['name'] | 'none' = 'none';

  score(h: Float32Array, n: number): void {
    if (n > this.capacity) throw new RangeError(`LM head: ${n} rows, room for ${this.capacity}`);
    this.h = h;
    this.n = n;
    this.done.fill(0, 0, n);
    // As the strategy itself (not a fallback), a head that can score several rows in one pass does so now.
    const group = this.group;
    if (this.name === 'q8_0' && n > 1 && group && this.matrix.logitsRowsWasm) {
      this.matrix.logitsRowsWasm(this.logitsPtr, this.stride, this.gmaxPtr, group.groups, h.byteOffset, n);
      for (let r = 0; r < n; r++) {
        group.fixLastGroup(this.rowLogits[r], this.rowGmax[r]);
        this.done[r] = 1;
      }
    }
  }

  /** Row r's logits, computed now unless they already were for this step. */
  logits(r: number): Float32Array {
    const h = this.h;
    if (!h || r >= this.n) throw new RangeError(`LM head: row ${r} was not scored`);
    const out = this.rowLogits[r];
    if (this.done[r]) return out;
    const C = this.C;
    if (this.arena && this.group) {
      const gmax = this.gmaxPtr + r * this.group.groups * 4;
      this.matrix.logitsWasm(out.byteOffset, gmax, h.byteOffset + r * C * 4);
      this.group.fixLastGroup(out, this.rowGmax[r]);
    } else {
      this.matrix.logitsJs(out, h, r * C);
    }
    this.done[r] = 1;
    return out;
  }

  top(r: number, k: number, ids: Int32Array, values: Float64Array): boolean {
    const top = this.group;
    const h = this.h;
    this.lastSource = 'none';
    if (!top || !h || k < 1 || k > top.groups) return false;
    // NaN logits would be passed over by the group maxima but not by a full scan: run only on finite ones.
    if (!this.matrix.finite) return false;
    const C = this.C;
    for (let c = r * C; c < (r + 1) * C; c++) if (!Number.isFinite(h[c])) return false;
    const logits = this.logits(r);
    if (!top.fromGroups(logits.byteOffset, this.rowGmax[r].byteOffset, k, ids, values)) return false;
    this.lastSource = this.name;
    return true;
  }

  /**
   * The logits of rows ids[0..n) of row r (ids at idsPtr, values to valsPtr), bit-identical to logits(r)'s:
   * what the screening strategy computes for its candidates.
   */
  rows(r: number, idsPtr: number, n: number, valsPtr: number): void {
    const h = this.h as Float32Array;
    this.matrix.rowsWasm(valsPtr, h.byteOffset + r * this.C * 4, idsPtr, n);
  }

  /** The search buffers (shared with the strategies that fall back to this head). */
  get search(): GroupTop | null {
    return this.group;
  }
}
