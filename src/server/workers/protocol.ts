// Messages between the main thread and a generation worker, and the data each worker starts with.
import type { GPTConfig } from '../../engine/config.js';
import type { SharedHead } from '../../engine/inference.js';
import type { DescribedLogprob, DescribedPromptToken } from '../../generate/logprobs.js';
import type { TokenizerTables } from '../../tokenizer/gpt2-bpe.js';
import type { ServedModel } from '../model.js';

/** Sent to every worker once (the init message): the weights live in one SharedArrayBuffer that all workers read. */
export interface WorkerInit {
  config: GPTConfig;
  /**
   * Float32Array over a SharedArrayBuffer (not copied per worker) on the pure-JS path; null when `head` holds
   * every weight in the shared WebAssembly memory.
   */
  params: Float32Array | null;
  /** Tokenizer tables in SharedArrayBuffers (shared, not copied, and not parsed again per worker). */
  tokenizer: TokenizerTables;
  /** The LM head packed once in a shared WebAssembly memory (and the compiled kernels): workers compute in it. */
  head: SharedHead | null;
  /**
   * The worker's cancel flags: an Int32Array over a SharedArrayBuffer with one entry per job slot (see
   * JobSlots). The pool writes a job's id into its slot's entry to cancel it; the worker reads the entry between
   * tokens. Ids are never reused, so a flag left for an ended job cannot stop the next one in that slot.
   */
  cancel: Int32Array;
  /** Generations the worker advances together (one pass over the weights per step for all of them). */
  batch: number;
  /**
   * ServedModel.id: the worker that loaded this model then uses its own head object instead of the posted
   * copy (a WebAssembly.Memory posted away and back is a new object, which would not be taken as its own).
   */
  modelId?: string;
}

/** What a job asks for; the prompt is text, tokenized in the worker so long prompts never block the event loop. */
export interface JobRequest {
  prompt: string;
  /** The prompt as token ids (then `prompt` is ignored; ids are checked against the vocabulary before). */
  promptIds?: number[];
  /**
   * Tokenize "<|endoftext|>" in the prompt as plain text, not as the end-of-text token: a chat message cannot
   * end the document and start another.
   */
  plainText?: boolean;
  /** null: generate until the context is full; 0 only with echo (the prompt is scored, nothing generated). */
  maxNewTokens: number | null;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
  stop: string[];
  /** OpenAI's penalties over the generated tokens (0: off). */
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** [token id, bias] pairs added to the logits before sampling. */
  logitBias?: Array<[number, number]> | null;
  /** Report each generated token's log-probability with this many alternatives; null/absent: none. */
  logprobs?: number | null;
  /** Return the prompt's tokens (scored when `logprobs` is set) with the result. */
  echo?: boolean;
  /**
   * Not a generation: 'tokenize' returns the prompt's ids (outcome.tokenized), 'detokenize' the text of
   * promptIds (outcome.text). Runs on a worker so a long text never blocks the event loop.
   */
  task?: 'generate' | 'tokenize' | 'detokenize';
  /** tokenize: each token as {id, piece, bytes} instead of its id. */
  withPieces?: boolean;
}

/** The prompt as echo returns it: its text (decoded from its ids) and its tokens. */
export interface EchoedPrompt {
  text: string;
  tokens: DescribedPromptToken[];
}

/**
 * After a streamed job's first text, its text reaches the main thread at most once per this many ms (and at
 * its end). Generation runs at thousands of tokens a second; a message and an SSE event per token cost the
 * main thread and the client more CPU than the tokens took, and no reader sees text arrive faster than a
 * 60 Hz screen (16.7 ms) redraws it.
 */
export const STREAM_FLUSH_MS = 10;

export type ToWorker =
  /** Load the served model from `dir` and post it (a 'model' message): the first worker does, see ModelLoad. */
  | { type: 'load'; dir: string; quantize?: 'q8_0' }
  /** The model to serve (a worker may be started before the model is loaded). */
  | { type: 'init'; init: WorkerInit }
  /**
   * `slot`: the job's entry in the worker's cancel flags. `stream`: post the tokens' text in token messages.
   * Otherwise only the end is posted, with the text and the time to the first token: a non-streamed reply
   * costs the main thread one message.
   */
  | { type: 'job'; jobId: number; slot: number; request: JobRequest; stream: boolean };

export interface JobOutcome {
  text: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
  /** With request.logprobs, unstreamed: the generated tokens' log-probabilities (streamed ones come with the text). */
  logprobs?: DescribedLogprob[];
  /** With request.echo, unstreamed (streamed: in the first token message). */
  echo?: EchoedPrompt;
  /**
   * A tokenize task's tokens as JSON text (ids, or {id, piece, bytes} objects), written here: a long text's
   * tokens cross to the main thread as one string instead of a graph of objects to copy and serialise there.
   */
  tokenized?: { json: string; count: number };
}

export type FromWorker =
  /** The worker asked to load the model has it, in shared memory, or says why not. */
  | { type: 'model'; ok: true; model: ServedModel }
  | { type: 'model'; ok: false; message: string }
  /** ownHead: the worker had to pack its own copy of the LM head instead of computing in the shared one. */
  | { type: 'ready'; ownHead: boolean }
  /**
   * Text the job's tokens released since the last token message (empty while a stop sequence may be forming),
   * and how many tokens it has generated. Sent at once until the first text is out, then at most once per
   * STREAM_FLUSH_MS, and before the job's end. The first one carries `start`: the prompt fit (the stream's
   * headers go out with its first text, in one wake-up of the main thread).
   */
  | {
      type: 'token';
      jobId: number;
      text: string;
      tokens: number;
      start?: { promptTokens: number; maxNewTokens: number; echo?: EchoedPrompt };
      /** With request.logprobs: the entries of the tokens whose text this message (or an earlier one) carries. */
      logprobs?: DescribedLogprob[];
    }
  /** firstTokenMs: from the worker receiving the job to its first token (-1: none was generated). */
  | { type: 'done'; jobId: number; outcome: JobOutcome; firstTokenMs: number }
  | { type: 'cancelled'; jobId: number; promptTokens: number; completionTokens: number }
  /** The prompt does not fit in the context (or is empty after tokenization). */
  | { type: 'rejected'; jobId: number; promptTokens: number; maxNewTokens: number; context: number }
  | { type: 'failed'; jobId: number; message: string };
