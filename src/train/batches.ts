// Training batches: random windows over a token stream (default preset) and the original's padded line
// batches (seed preset). Both draw from the seeded Rng only, so a seed fixes the whole run.
import type { Rng } from '../engine/rng.js';

/** One batch: inputs and targets [B, T] (target −1 = not counted). */
export interface Batch {
  B: number;
  T: number;
  inputs: Int32Array;
  targets: Int32Array;
  /** Number of counted targets. */
  tokens: number;
}

/**
 * Offsets where a line begins: 0 and every position after a newline or end-of-text token, limited to
 * those with a full window of T+1 tokens after them (at least offset 0 is always returned).
 */
export function lineStarts(stream: Int32Array, T: number, newlineId: number, eosId: number): Int32Array {
  const last = Math.max(0, stream.length - T - 1);
  const starts = [0];
  for (let i = 1; i <= last; i++) if (stream[i - 1] === newlineId || stream[i - 1] === eosId) starts.push(i);
  return Int32Array.from(starts);
}

/**
 * B windows of T+1 consecutive tokens: inputs are the first T, targets the last T. Each window starts at
 * a random offset, or at a random one of `starts` when given (e.g. line starts, so position 0 of a window
 * is the beginning of a line as in evaluation and serving). Streams shorter than T+1 tokens are used
 * whole (T shrinks to stream length − 1).
 */
export function windowBatch(stream: Int32Array, B: number, T: number, rng: Rng, starts?: Int32Array): Batch {
  if (stream.length < 2) throw new Error('the corpus has fewer than 2 tokens; nothing to learn from');
  const t = Math.min(T, stream.length - 1);
  const inputs = new Int32Array(B * t);
  const targets = new Int32Array(B * t);
  for (let b = 0; b < B; b++) {
    const start = starts
      ? Math.min(starts[rng.int(starts.length)], stream.length - t - 1)
      : rng.int(stream.length - t);
    inputs.set(stream.subarray(start, start + t), b * t);
    targets.set(stream.subarray(start + 1, start + t + 1), b * t);
  }
  return { B, T: t, inputs, targets, tokens: B * t };
}

/** Fisher–Yates shuffle of 0..n−1 with the seeded generator. */
export function shuffledOrder(n: number, rng: Rng): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * The original recipe's batch: samples padded with pad (EOS) to the longest, labels = inputs with the
 * padding counted (as the original did), shifted inside the model: target[t] = input[t+1].
 */
export function paddedBatch(samples: number[][], pad: number): Batch {
  const B = samples.length;
  const T = Math.max(...samples.map((s) => s.length));
  const inputs = new Int32Array(B * T).fill(pad);
  const targets = new Int32Array(B * T).fill(-1);
  samples.forEach((s, b) => {
    inputs.set(s, b * T);
  });
  let tokens = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T - 1; t++) {
      targets[b * T + t] = inputs[b * T + t + 1];
      tokens++;
    }
  }
  return { B, T, inputs, targets, tokens };
}

/** Epochs of padded batches over the samples, reshuffled at the start of every epoch. */
export function* epochBatches(samples: number[][], batchSize: number, epochs: number, pad: number, rng: Rng) {
  for (let e = 0; e < epochs; e++) {
    const order = shuffledOrder(samples.length, rng);
    for (let i = 0; i < order.length; i += batchSize) {
      yield paddedBatch(
        order.slice(i, i + batchSize).map((k) => samples[k]),
        pad,
      );
    }
  }
}
