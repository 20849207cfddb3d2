// Logits processors that need a step's full logits: presence/frequency penalties and logit bias, applied in
// place on a copy of the logits before the sampler's temperature, top-k and top-p.

/** A sparse additive bias: `values[i]` is added to the logit of `ids[i]` (OpenAI's logit_bias). */
export interface LogitBias {
  ids: Int32Array;
  values: Float32Array;
}

/** What a request adds to the sampler; every field at its neutral value leaves the logits alone. */
export interface ProcessorParams {
  /** OpenAI's presence_penalty: subtracted once from every token generated so far. */
  presencePenalty: number;
  /** OpenAI's frequency_penalty: subtracted once per time a token was generated so far. */
  frequencyPenalty: number;
  logitBias: LogitBias | null;
}

export const NO_PROCESSORS: Readonly<ProcessorParams> = {
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: null,
};

export function processorsActive(params: ProcessorParams): boolean {
  return (
    params.presencePenalty !== 0 ||
    params.frequencyPenalty !== 0 ||
    (params.logitBias !== null && params.logitBias.ids.length > 0)
  );
}

/** A logit_bias object ({"token id": bias}) as a LogitBias; keys must already be checked as ids. */
export function logitBiasFrom(bias: Readonly<Record<string, number>> | null | undefined): LogitBias | null {
  if (!bias) return null;
  const entries = Object.entries(bias);
  if (entries.length === 0) return null;
  const ids = new Int32Array(entries.length);
  const values = new Float32Array(entries.length);
  entries.forEach(([id, value], i) => {
    ids[i] = Number(id);
    values[i] = value;
  });
  return { ids, values };
}

/**
 * Counts of the tokens generated so far, kept sparse: the ids in the order first generated and how many
 * times each came. Penalties then cost one pass over the distinct generated ids, not over the vocabulary.
 */
export class GeneratedCounts {
  private readonly counts = new Map<number, number>();

  add(id: number): void {
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
  }

  entries(): IterableIterator<[number, number]> {
    return this.counts.entries();
  }
}

/**
 * OpenAI's penalties, in place: logit[j] -= count[j]·frequency + (count[j] > 0)·presence, over the tokens
 * generated so far (not the prompt's).
 */
export function applyPenalties(
  logits: Float32Array,
  counts: GeneratedCounts,
  presence: number,
  frequency: number,
): void {
  if (presence === 0 && frequency === 0) return;
  for (const [id, count] of counts.entries()) {
    if (id < 0 || id >= logits.length) continue;
    logits[id] -= count * frequency + presence;
  }
}

/** Adds each bias to its token's logit, in place (ids outside the logits are ignored). */
export function applyLogitBias(logits: Float32Array, bias: LogitBias | null): void {
  if (!bias) return;
  for (let i = 0; i < bias.ids.length; i++) {
    const id = bias.ids[i];
    if (id >= 0 && id < logits.length) logits[id] += bias.values[i];
  }
}
