// Turns a training text into token sequences: blank-line-separated documents (default) or one sample per line (seed).

/** Anything with GPT-2's encode and end-of-text id (the tokenizer, or a stand-in in tests). */
export interface Encoder {
  encode(text: string): number[];
  readonly eosTokenId: number;
}

/** Blocks of text separated by blank lines (lines holding only whitespace count as blank), trimmed. */
export function splitBlocks(text: string): string[] {
  return text
    .replace(/\r\n?/g, '\n')
    .split(/\n[ \t]*\n/)
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
}

/** Non-empty lines, each trimmed of its line break (the original's samples and the eval's units). */
export function splitLines(text: string): string[] {
  return text
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .filter((l) => l.trim().length > 0);
}

/** True for a dialogue block: it starts with a user turn. */
export function isDialogue(block: string): boolean {
  return block.startsWith('User:');
}

/**
 * The default preset's token stream: each block encoded and followed by <|endoftext|>. Dialogue blocks get
 * the system prompt line in front (as the chat template puts it before the first user turn), so the model
 * sees at training time exactly the prompt shape it is served with.
 */
export function documentStream(text: string, tokenizer: Encoder, systemPrompt: string | null): Int32Array {
  const ids: number[] = [];
  for (const block of splitBlocks(text)) {
    const body = systemPrompt && isDialogue(block) ? `${systemPrompt}\n${block}` : block;
    for (const id of tokenizer.encode(body)) ids.push(id);
    ids.push(tokenizer.eosTokenId);
  }
  return Int32Array.from(ids);
}

/** The seed recipe's samples: every non-empty line encoded on its own and truncated to maxLength tokens. */
export function lineSamples(text: string, tokenizer: Encoder, maxLength: number): number[][] {
  return splitLines(text)
    .map((line) => tokenizer.encode(line).slice(0, maxLength))
    .filter((ids) => ids.length > 0);
}

/** Sorted distinct ids of the given sequences plus extra ids (e.g. EOS): the restricted training vocabulary. */
export function vocabularyOf(sequences: Iterable<ArrayLike<number>>, extra: number[] = []): Int32Array {
  const seen = new Set<number>(extra);
  for (const seq of sequences) for (let i = 0; i < seq.length; i++) seen.add(seq[i]);
  return Int32Array.from(seen).sort();
}
