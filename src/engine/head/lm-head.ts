// The LM head behind one small interface: what the sampler asks of the last layer, however a strategy answers it.

/**
 * One session's LM head over the final-normed rows h [n, C] of a step (one row when decoding alone, one per
 * sequence in a batched step). Strategies (full.ts, hot-rows.ts, screen.ts) differ in how little of the head
 * they compute, never in the answers: top() gives exactly what a scan of all V logits gives.
 */
export interface LmHead {
  /** Which strategy this is (for the bench and tests). */
  readonly name: 'full' | 'hot-rows' | 'int8-screen' | 'q8_0';
  /** Largest k that top() answers (0: it never does, e.g. on the pure-JS path). */
  readonly topLimit: number;
  /** Logits computed exactly by the last top() call (for tests and the bench). */
  readonly lastCandidates: number;
  /** Which strategy answered the last top() call ('none': it returned false). */
  readonly lastSource: LmHead['name'] | 'none';
  /** Runs what the rows need before any question (the int8 scores, the hot rows' logits); h must stay as is. */
  score(h: Float32Array, n: number): void;
  /**
   * Row r's k largest logits, sorted descending with ties to the lower id, into ids/values (bit-identical to
   * the full logits' values). False when this head cannot tell (k out of range, non-finite input or weights):
   * then logits(r) and a scan give the answer.
   */
  top(r: number, k: number, ids: Int32Array, values: Float64Array): boolean;
  /** Row r's V logits (a buffer reused by the next step). */
  logits(r: number): Float32Array;
}
