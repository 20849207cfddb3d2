// Mean next-token cross-entropy of token sequences through an inference session: the eval loss of the weights
// the session runs (in whatever format), e.g. to compare a q8_0 model with its f32 original on the same data.
import type { InferenceSession } from './session.js';

export interface SequenceLoss {
  /** Mean nats per predicted token. */
  loss: number;
  /** Predicted tokens (each sequence's length − 1, summed). */
  tokens: number;
}

/** Every sequence from position 0 (each at most the session's positions), scored on all V logits. */
export function meanTokenLoss(
  session: InferenceSession,
  sequences: readonly (readonly number[])[],
): SequenceLoss {
  const V = session.weights.config.vocabSize;
  let total = 0;
  let tokens = 0;
  for (const ids of sequences) {
    if (ids.length < 2) continue;
    if (ids.length > session.capacity)
      throw new RangeError(
        `a sequence of ${ids.length} tokens is longer than the session's ${session.capacity}`,
      );
    const logits = session.allLogits(ids);
    for (let t = 0; t + 1 < ids.length; t++) {
      const row = t * V;
      let max = Number.NEGATIVE_INFINITY;
      for (let v = 0; v < V; v++) if (logits[row + v] > max) max = logits[row + v];
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[row + v] - max);
      total += max + Math.log(sum) - logits[row + ids[t + 1]];
      tokens++;
    }
  }
  return { loss: tokens > 0 ? total / tokens : Number.NaN, tokens };
}
