// A real 512-token byte-level BPE vocabulary (256 bytes + 255 merges + <|endoftext|>) to pair with the multi-v512 model.
import { bytesToUnicode, EOS_TOKEN, type TokenizerData } from '../../src/tokenizer/gpt2-bpe.js';

/** Tokenizer data with exactly `size` ids (at least 257): the 256 byte tokens, merges, then <|endoftext|>. */
export function smallTokenizerData(size = 512): TokenizerData {
  const bytes = bytesToUnicode();
  const vocab: Record<string, number> = {};
  bytes.forEach((ch, id) => {
    vocab[ch] = id;
  });
  const letters = 'etaoinshrdlucmfwypvbgkjqxz'.split('');
  const space = bytes[32]; // 'Ġ'
  const pairs: Array<[string, string]> = [];
  for (const l of letters) pairs.push([space, l]);
  for (const a of letters) for (const b of letters) pairs.push([a, b]);
  const merges = pairs.slice(0, size - 257);
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  vocab[EOS_TOKEN] = size - 1;
  return { vocab, merges };
}
