// The per-token evaluation loss `tiny-llm eval` reports and `--max-loss` gates on: every non-empty line on
// its own (truncated to the context), mean next-token cross-entropy over the full vocabulary.

import { matmulTransposedForward } from '../engine/matmul.js';
import type { GPT2 } from '../engine/model.js';
import { expNeg } from '../engine/ops.js';
import { type Encoder, splitLines } from './corpus.js';

/** Upper bound on B·T per forward pass, and rows per LM-head product (whose logits take rows·V floats). */
const EVAL_BATCH_TOKENS = 512;

export interface EvalResult {
  lines: number;
  /** Predicted tokens (each line's length − 1, summed). */
  tokens: number;
  loss: number;
  /** Same loss with the softmax restricted to `subset` (when one was given): what training optimised. */
  restrictedLoss?: number;
}

/** Evaluates `model` on the lines of `text`; `subset` (sorted ids) also measures the restricted loss. */
export function evaluateLines(
  model: GPT2,
  tokenizer: Encoder,
  text: string,
  subset?: Int32Array,
): EvalResult {
  const { vocabSize: V, nPositions, nEmbd: C } = model.config;
  const lines = splitLines(text);
  let total = 0;
  let totalRestricted = 0;
  let tokens = 0;
  // The LM head runs only on scored positions (not on padding or each line's last token), gathered into
  // chunks of EVAL_BATCH_TOKENS rows: the head is nearly all of the work.
  const hidden = new Float32Array(EVAL_BATCH_TOKENS * C);
  const chunkTargets = new Int32Array(EVAL_BATCH_TOKENS);
  const logits = new Float32Array(EVAL_BATCH_TOKENS * V);
  let rows = 0;
  const flush = () => {
    matmulTransposedForward(logits, hidden, model.views.lmHead, rows, C, V);
    for (let r = 0; r < rows; r++) {
      const row = r * V;
      const target = chunkTargets[r];
      total += logSumExp(logits, row, V, null) - logits[row + target];
      if (subset) totalRestricted += logSumExp(logits, row, V, subset) - logits[row + target];
    }
    tokens += rows;
    rows = 0;
  };
  const training = model.training;
  model.training = false;
  try {
    // Lines are run a few at a time, each padded to the batch's longest; padding positions are not scored.
    const seqs = lines
      .map((line) => tokenizer.encode(line).slice(0, nPositions))
      .filter((ids) => ids.length >= 2);
    for (let i = 0; i < seqs.length; ) {
      let T = seqs[i].length;
      let j = i + 1;
      while (j < seqs.length && Math.max(T, seqs[j].length) * (j - i + 1) <= EVAL_BATCH_TOKENS) {
        T = Math.max(T, seqs[j].length);
        j++;
      }
      const B = j - i;
      const inputs = new Int32Array(B * T);
      for (let b = 0; b < B; b++) inputs.set(seqs[i + b], b * T);
      const h = model.forwardHidden(inputs, B, T);
      for (let b = 0; b < B; b++) {
        const ids = seqs[i + b];
        for (let t = 0; t < ids.length - 1; t++) {
          if (rows === EVAL_BATCH_TOKENS) flush();
          hidden.set(h.subarray((b * T + t) * C, (b * T + t + 1) * C), rows * C);
          chunkTargets[rows++] = ids[t + 1];
        }
      }
      i = j;
    }
    if (rows > 0) flush();
  } finally {
    model.training = training;
  }
  const result: EvalResult = { lines: lines.length, tokens, loss: tokens === 0 ? 0 : total / tokens };
  if (subset) result.restrictedLoss = tokens === 0 ? 0 : totalRestricted / tokens;
  return result;
}

function logSumExp(x: Float32Array, row: number, V: number, subset: Int32Array | null): number {
  let max = Number.NEGATIVE_INFINITY;
  let sum = 0;
  if (subset) {
    for (const id of subset) max = Math.max(max, x[row + id]);
    for (const id of subset) sum += expNeg(x[row + id] - max);
  } else {
    for (let v = 0; v < V; v++) if (x[row + v] > max) max = x[row + v];
    for (let v = 0; v < V; v++) sum += expNeg(x[row + v] - max);
  }
  return Math.log(sum) + max;
}
