// Turns generated token ids into text deltas that never split a UTF-8 character.

/** What generation needs from a tokenizer: the raw bytes of each token. */
export interface TokenBytes {
  tokenBytes(id: number): Uint8Array;
}

export class TokenTextStream {
  private decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(private readonly tokenizer: TokenBytes) {}

  /** Adds one token; returns the text completed by it (possibly empty while a character is incomplete). */
  push(id: number): string {
    return this.decoder.decode(this.tokenizer.tokenBytes(id), { stream: true });
  }

  /** Ends the stream: an incomplete trailing character becomes U+FFFD. */
  flush(): string {
    const rest = this.decoder.decode();
    this.decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    return rest;
  }
}
