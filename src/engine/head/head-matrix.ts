// The LM head's weights [V, C] as the head strategies use them, whatever format holds them.
import type { WasmArena } from '../wasm/runtime.js';

/**
 * A head matrix computes logits; the strategies decide which ones. Pointers are byte offsets into the
 * arena's memory; on the pure-JS path (arena null) only logitsJs runs.
 */
export interface HeadMatrix {
  readonly vocabSize: number;
  readonly nEmbd: number;
  readonly arena: WasmArena | null;
  /** Whether every weight is finite (then finite inputs give logits without NaN). */
  readonly finite: boolean;
  /** Bytes one pass over every row reads. */
  readonly bytes: number;
  /** All V logits of the row at h into out (room for whole 64-row groups), and each group's maximum into gmax. */
  logitsWasm(out: number, gmax: number, h: number): void;
  /** The logits of rows ids[0..n) into vals (n rounded up to 4 entries), bit-identical to logitsWasm's. */
  rowsWasm(vals: number, h: number, ids: number, n: number): void;
  /**
   * The logits of n rows at h (row r at h + r·C floats) in one pass over the head: row r's into out + r·stride
   * floats and its group maxima into gmax + r·gstride, the same bits logitsWasm gives each row alone. Absent
   * where a head computes rows one at a time.
   */
  logitsRowsWasm?(out: number, stride: number, gmax: number, gstride: number, h: number, n: number): void;
  /** All V logits of h[hOff .. hOff + C) into out (the pure-JS path). */
  logitsJs(out: Float32Array, h: Float32Array, hOff: number): void;
}
