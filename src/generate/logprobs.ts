// Log-probabilities of the model's own distribution — temperature 1, before penalties, bias, top-k and top-p —
// computed from a step's full logits as `tiny-llm eval` computes its loss: log p(x) = logit(x) − log Σ exp(logits).

/** One candidate token and its log-probability. */
export interface TopLogprob {
  id: number;
  logprob: number;
}

/** A token's log-probability and the `top.length` most likely tokens at its position (most likely first). */
export interface TokenLogprob {
  id: number;
  logprob: number;
  top: TopLogprob[];
}

/** The most log-probabilities a request may ask for per position (OpenAI's chat limit). */
export const MAX_TOP_LOGPROBS = 20;

/** log Σ exp(logits), in float64 with the maximum subtracted first. */
export function logSumExp(logits: ArrayLike<number>): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  if (!Number.isFinite(max)) return max;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/**
 * The `n` largest logits as log-probabilities (`lse` = logSumExp(logits)), most likely first, ties to the
 * lower id. One pass with a sorted buffer of n entries: O(V·n) at worst, O(V) in practice for n ≤ 20.
 */
export function topLogprobs(logits: ArrayLike<number>, n: number, lse: number): TopLogprob[] {
  const count = Math.min(Math.max(0, Math.floor(n)), logits.length);
  if (count === 0) return [];
  const ids: number[] = [];
  const values: number[] = [];
  for (let v = 0; v < logits.length; v++) {
    const x = logits[v];
    if (ids.length === count && !(x > values[count - 1])) continue;
    // Insert after every value ≥ x (earlier ids win ties), dropping the weakest when full.
    let at = ids.length === count ? count - 1 : ids.length;
    while (at > 0 && values[at - 1] < x) at--;
    if (ids.length === count) {
      ids.pop();
      values.pop();
    }
    ids.splice(at, 0, v);
    values.splice(at, 0, x);
  }
  return ids.map((id, i) => ({ id, logprob: values[i] - lse }));
}

/** The log-probability of `id` under `logits` and the `n` most likely tokens there. */
export function tokenLogprob(logits: ArrayLike<number>, id: number, n: number): TokenLogprob {
  const lse = logSumExp(logits);
  return { id, logprob: logits[id] - lse, top: topLogprobs(logits, n, lse) };
}

/** What scorePrompt needs of an inference session: full logits after each token. */
export interface ScoringSession {
  reset(): void;
  prefill(ids: ArrayLike<number>): Float32Array;
  step(id: number): Float32Array;
}

/**
 * Each prompt token's log-probability given the tokens before it, with the `n` most likely tokens at its
 * position; the first token has none (null), as in OpenAI's echo. Runs the prompt one token at a time
 * through the KV cache, so it needs one vocabulary-sized logits row at a time, never the prompt's n × V.
 */
export function scorePrompt(
  session: ScoringSession,
  ids: readonly number[],
  n: number,
): Array<TokenLogprob | null> {
  const out: Array<TokenLogprob | null> = [null];
  if (ids.length === 0) return [];
  session.reset();
  let logits = session.prefill([ids[0]]);
  for (let t = 1; t < ids.length; t++) {
    out.push(tokenLogprob(logits, ids[t], n));
    if (t + 1 < ids.length) logits = session.step(ids[t]);
  }
  return out;
}

/** What describing tokens needs from a tokenizer: the raw bytes of each token. */
export interface TokenBytesSource {
  tokenBytes(id: number): Uint8Array;
}

/** A token as the API shows it: its text (bytes that are not whole UTF-8 characters read as U+FFFD) and bytes. */
export interface TokenText {
  id: number;
  token: string;
  bytes: number[];
}

export interface DescribedTop extends TokenText {
  logprob: number;
}

/** A token's log-probability as the API reports it, with its offset in the text. */
export interface DescribedLogprob extends DescribedTop {
  /** Where the token starts in the generated text (UTF-16 code units); a token that starts inside a character counts from that character. */
  offset: number;
  top: DescribedTop[];
}

const lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export function describeToken(tokens: TokenBytesSource, id: number): TokenText {
  const bytes = tokens.tokenBytes(id);
  return { id, token: lossy.decode(bytes), bytes: Array.from(bytes) };
}

/**
 * Pairs generated tokens' log-probabilities with the text a stop matcher releases: an entry goes out once
 * the released text reaches past the token's start, so the entries sent always describe text that was sent,
 * and the tokens of a stop sequence that cut the text are never reported.
 */
export class AlignedLogprobs {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  private readonly held: DescribedLogprob[] = [];
  /** Length of the generated text decoded so far (before any stop sequence cut it). */
  private decoded = 0;

  constructor(private readonly tokens: TokenBytesSource) {}

  /** Adds the next generated token's entry. */
  add(entry: TokenLogprob): void {
    const bytes = this.tokens.tokenBytes(entry.id);
    this.held.push({
      ...describeToken(this.tokens, entry.id),
      logprob: entry.logprob,
      offset: this.decoded,
      top: entry.top.map((t) => ({ ...describeToken(this.tokens, t.id), logprob: t.logprob })),
    });
    this.decoded += this.decoder.decode(bytes, { stream: true }).length;
  }

  /** The held entries whose token starts before `releasedLength` (the length of the text released so far). */
  release(releasedLength: number): DescribedLogprob[] {
    let n = 0;
    while (n < this.held.length && this.held[n].offset < releasedLength) n++;
    return this.held.splice(0, n);
  }

  /** At the end: the rest, unless a stop sequence cut the text (then its tokens are dropped). */
  finish(cutByStop: boolean): DescribedLogprob[] {
    const rest = this.held.splice(0);
    return cutByStop ? [] : rest;
  }
}

/** A prompt token as echo reports it: no log-probability for the first token, nor for any when not scored. */
export interface DescribedPromptToken extends TokenText {
  offset: number;
  logprob: number | null;
  top: DescribedTop[] | null;
}

/**
 * The prompt's tokens as echo reports them: each token described, its offset in the prompt's text, and its
 * log-probability (null for the first token, or for all when `scores` is null).
 */
export function describePrompt(
  tokens: TokenBytesSource,
  ids: readonly number[],
  scores: ReadonlyArray<TokenLogprob | null> | null,
): DescribedPromptToken[] {
  const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  let offset = 0;
  return ids.map((id, i) => {
    const score = scores?.[i] ?? null;
    const entry = {
      ...describeToken(tokens, id),
      offset,
      logprob: score ? score.logprob : null,
      top: score ? score.top.map((t) => ({ ...describeToken(tokens, t.id), logprob: t.logprob })) : null,
    };
    offset += decoder.decode(tokens.tokenBytes(id), { stream: true }).length;
    return entry;
  });
}
