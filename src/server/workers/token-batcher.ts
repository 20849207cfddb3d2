// Coalesces a streamed job's token texts into few messages: at once until the first text is out, then at most once per STREAM_FLUSH_MS.
import { STREAM_FLUSH_MS } from './protocol.js';

/** What a token message carries: the text released since the last one and the job's token count. */
export interface TokenBatch {
  text: string;
  tokens: number;
}

export class TokenBatcher {
  private pending = '';
  private tokens = 0;
  private postedTokens = 0;
  private postedAt = 0;
  private textPosted = false;

  constructor(private readonly flushMs = STREAM_FLUSH_MS) {}

  /**
   * Adds one step's text (`tokens`: the job's count after it) at time `now` (ms); returns the batch to post
   * now, or null to hold it. Every step goes out until one with text has; then a batch goes once `flushMs`
   * have passed since the last.
   */
  add(text: string, tokens: number, now: number): TokenBatch | null {
    this.pending += text;
    this.tokens = tokens;
    if (this.textPosted && now - this.postedAt < this.flushMs) return null;
    return this.take(now);
  }

  /** What is held (at the job's end, or before it reports a cancel), or null when nothing is. */
  flush(now: number): TokenBatch | null {
    if (this.pending === '' && this.postedTokens === this.tokens) return null;
    return this.take(now);
  }

  private take(now: number): TokenBatch {
    const batch = { text: this.pending, tokens: this.tokens };
    if (this.pending !== '') this.textPosted = true;
    this.pending = '';
    this.postedTokens = this.tokens;
    this.postedAt = now;
    return batch;
  }
}
