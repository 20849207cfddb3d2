// A generation worker thread: loads its code (the first one also the model, when asked), takes the shared model in an init message, then runs its jobs.
import { parentPort } from 'node:worker_threads';
import { InferenceSession, InferenceWeights, type SharedHead } from '../../engine/inference.js';
import { adoptWasmMemory } from '../../engine/wasm/runtime.js';
import { Generation } from '../../generate/generate.js';
import { logitBiasFrom } from '../../generate/logits-processors.js';
import { AlignedLogprobs, describePrompt, describeToken, scorePrompt } from '../../generate/logprobs.js';
import { Gpt2Tokenizer } from '../../tokenizer/gpt2-bpe.js';
import type { ServedModel } from '../model.js';
import { BatchScheduler } from './batch-scheduler.js';
import type { EchoedPrompt, FromWorker, JobRequest, ToWorker, WorkerInit } from './protocol.js';
import { Sequence } from './sequence.js';

const port = parentPort;
if (!port) throw new Error('generation-worker.ts runs only as a worker thread');

/** What init builds; the worker may start (and load this code) before the model is loaded in the main thread. */
let init!: WorkerInit;
let weights!: InferenceWeights;
let tokenizer!: Gpt2Tokenizer;
let session!: InferenceSession;
/** Advances this worker's generations together (see BatchScheduler). */
let scheduler!: BatchScheduler;
let context = 0;
/** The shared LM head this worker was given (null: pure JS, or none shared). */
let sharedHead: SharedHead | null = null;

/** Builds the model views from shared weights, head and tokenizer tables (nothing is parsed, packed or copied). */
function setUp(data: WorkerInit): void {
  init = data;
  // The worker that loaded this model takes its own head: already in its memory, hot rows and all.
  const head = loaded && data.modelId === loaded.id ? loaded.head : data.head;
  sharedHead = head;
  // Compute in the memory that holds the shared packed LM head (and reuse its compiled kernels).
  if (head) adoptWasmMemory(head.module, head.memory);
  if (!head && !data.params) throw new Error('the shared weights cannot be adopted on this thread');
  weights = new InferenceWeights(data.config, data.params, head ? { head } : {});
  tokenizer = new Gpt2Tokenizer(data.tokenizer);
  // One session per worker: its scratch prefills every prompt (and scores echoed ones); each generation has a
  // KV cache of its own, reused across jobs (see BatchScheduler).
  session = new InferenceSession(weights);
  context = weights.config.nPositions;
  scheduler = new BatchScheduler(session, data.batch, cancelled, (seq, err) =>
    post({ type: 'failed', jobId: seq.jobId, message: err instanceof Error ? err.message : String(err) }),
  );
}

function post(message: FromWorker): void {
  port!.postMessage(message);
}

/** The pool cancels a job by writing its id into the job's slot of the cancel flags. */
function cancelled(slot: number, jobId: number): boolean {
  return Atomics.load(init.cancel, slot) === jobId;
}

/** A tokenize or detokenize task: answered at once, nothing is generated. */
function runTask(jobId: number, request: JobRequest): void {
  const ids = request.promptIds ?? [];
  const done = (text: string, promptTokens: number, tokenized?: { json: string; count: number }) =>
    post({
      type: 'done',
      jobId,
      firstTokenMs: -1,
      outcome: { text, finishReason: 'length', promptTokens, completionTokens: 0, tokenized },
    });
  if (request.task === 'detokenize') {
    done(tokenizer.decode(ids), ids.length);
    return;
  }
  const encoded = tokenizer.encode(request.prompt, { special: request.plainText !== true });
  const tokens = request.withPieces
    ? encoded.map((id) => {
        const { token, bytes } = describeToken(tokenizer, id);
        return { id, piece: token, bytes };
      })
    : encoded;
  done('', encoded.length, { json: JSON.stringify(tokens), count: encoded.length });
}

function run({ jobId, slot, request, stream }: Extract<ToWorker, { type: 'job' }>): void {
  if (request.task === 'tokenize' || request.task === 'detokenize') {
    runTask(jobId, request);
    return;
  }
  const ids = request.promptIds ?? tokenizer.encode(request.prompt, { special: request.plainText !== true });
  const maxNewTokens = request.maxNewTokens ?? context - ids.length;
  // max_tokens 0 scores an echoed prompt without generating.
  const fewest = request.echo ? 0 : 1;
  if (ids.length === 0 || maxNewTokens < fewest || ids.length + maxNewTokens > context) {
    post({
      type: 'rejected',
      jobId,
      promptTokens: ids.length,
      maxNewTokens: Math.max(0, maxNewTokens),
      context,
    });
    return;
  }
  if (cancelled(slot, jobId)) {
    post({ type: 'cancelled', jobId, promptTokens: ids.length, completionTokens: 0 });
    return;
  }
  // A streamed job posts its text in token messages, the first saying that the prompt fit (the stream starts
  // then); an unstreamed one posts only its end.
  const received = performance.now();
  const topN = request.logprobs ?? null;
  // Echo: the prompt's tokens, scored first when log-probabilities are asked for (a pass of their own).
  const echo: EchoedPrompt | undefined = request.echo
    ? {
        text: tokenizer.decode(ids),
        tokens: describePrompt(tokenizer, ids, topN === null ? null : scorePrompt(session, ids, topN)),
      }
    : undefined;
  let start: { promptTokens: number; maxNewTokens: number; echo?: EchoedPrompt } | undefined = {
    promptTokens: ids.length,
    maxNewTokens,
    echo,
  };
  // A streamed echo goes out at once, before the first generated text.
  if (stream && echo) {
    post({ type: 'token', jobId, text: '', tokens: 0, start });
    start = undefined;
  }
  if (maxNewTokens === 0) {
    post({
      type: 'done',
      jobId,
      firstTokenMs: -1,
      outcome: {
        text: '',
        finishReason: 'length',
        promptTokens: ids.length,
        completionTokens: 0,
        ...(stream ? {} : { echo }),
        ...(topN === null || stream ? {} : { logprobs: [] }),
      },
    });
    return;
  }
  const scratch = scheduler.takeScratch();
  const generation = new Generation(
    tokenizer,
    ids,
    {
      temperature: request.temperature,
      topK: request.topK,
      topP: request.topP,
      repetitionPenalty: request.repetitionPenalty,
      maxNewTokens,
      seed: request.seed,
      stop: request.stop,
      eosTokenId: weights.config.eosTokenId,
      presencePenalty: request.presencePenalty ?? 0,
      frequencyPenalty: request.frequencyPenalty ?? 0,
      logitBias: logitBiasFrom(request.logitBias ? Object.fromEntries(request.logitBias) : null),
      logprobs: topN,
    },
    context,
    scratch,
  );
  // The sequence joins the batch at its next step; its cache holds its prompt and its most new tokens.
  scheduler.add(
    new Sequence({
      jobId,
      slot,
      stream,
      ids,
      weights,
      generation,
      cache: scheduler.takeCache(ids.length + maxNewTokens),
      scratch,
      // Log-probabilities go out with the text their tokens released (see AlignedLogprobs).
      aligned: topN === null ? null : new AlignedLogprobs(tokenizer),
      echo,
      start,
      received,
      post,
    }),
  );
}

/** The model this worker loaded (its id and head), if it was the one asked to load. */
let loaded: Pick<ServedModel, 'id' | 'head'> | null = null;

/**
 * Loads the served model for everyone (see ModelLoad) while the main thread loads its own code; its tables and
 * weights are in shared memory, so posting shares them.
 */
function load(dir: string, quantize?: 'q8_0'): void {
  import('../model.js')
    .then(({ loadServedModel }) => loadServedModel(dir, { quantize }))
    .then(
      (model) => {
        loaded = model;
        post({ type: 'model', ok: true, model });
      },
      (err: unknown) =>
        post({ type: 'model', ok: false, message: err instanceof Error ? err.message : String(err) }),
    );
}

port.on('message', (message: ToWorker) => {
  if (message.type === 'load') {
    load(message.dir, message.quantize);
    return;
  }
  if (message.type === 'init') {
    // A model that cannot be built here ends the worker: the pool reports why it exited before it was ready.
    setUp(message.init);
    const own = weights.packedHead;
    post({
      type: 'ready',
      ownHead: !!sharedHead && (own?.arena.memory !== sharedHead.memory || own.ptr !== sharedHead.ptr),
    });
    return;
  }
  if (message.type !== 'job') return;
  try {
    run(message);
  } catch (err) {
    post({ type: 'failed', jobId: message.jobId, message: err instanceof Error ? err.message : String(err) });
  }
});
