// A generation worker thread: loads its code (the first one also the model), takes the shared model in an init message, then runs one job at a time.
import { parentPort, workerData } from 'node:worker_threads';
import { InferenceSession, InferenceWeights, type SharedHead } from '../../engine/inference.js';
import { adoptWasmMemory } from '../../engine/wasm/runtime.js';
import { generate } from '../../generate/generate.js';
import { Gpt2Tokenizer } from '../../tokenizer/gpt2-bpe.js';
import type { ServedModel } from '../model.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { type TokenBatch, TokenBatcher } from './token-batcher.js';

const port = parentPort;
if (!port) throw new Error('generation-worker.ts runs only as a worker thread');

/** What init builds; the worker may start (and load this code) before the model is loaded in the main thread. */
let init!: WorkerInit;
let weights!: InferenceWeights;
let tokenizer!: Gpt2Tokenizer;
let session!: InferenceSession;
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
  weights = new InferenceWeights(data.config, data.params, head ? { head } : {});
  tokenizer = new Gpt2Tokenizer(data.tokenizer);
  // One session per worker: its KV cache is allocated once and reused by every job.
  session = new InferenceSession(weights);
  context = weights.config.nPositions;
}

function post(message: FromWorker): void {
  port!.postMessage(message);
}

/** The pool flags the running job in cancel[0] and a job posted behind it in cancel[1]. */
function cancelled(jobId: number): boolean {
  return Atomics.load(init.cancel, 0) === jobId || Atomics.load(init.cancel, 1) === jobId;
}

function run({ jobId, request, stream }: Extract<ToWorker, { type: 'job' }>): void {
  const ids = tokenizer.encode(request.prompt);
  const maxNewTokens = request.maxNewTokens ?? context - ids.length;
  if (ids.length === 0 || maxNewTokens < 1 || ids.length + maxNewTokens > context) {
    post({
      type: 'rejected',
      jobId,
      promptTokens: ids.length,
      maxNewTokens: Math.max(0, maxNewTokens),
      context,
    });
    return;
  }
  if (cancelled(jobId)) {
    post({ type: 'cancelled', jobId, promptTokens: ids.length, completionTokens: 0 });
    return;
  }
  // A streamed job posts its text in token messages, the first saying that the prompt fit (the stream starts
  // then); an unstreamed one posts only its end.
  let start: { promptTokens: number; maxNewTokens: number } | undefined = {
    promptTokens: ids.length,
    maxNewTokens,
  };
  const received = performance.now();
  let firstTokenMs = -1;
  const it = generate(session, tokenizer, ids, {
    temperature: request.temperature,
    topK: request.topK,
    topP: request.topP,
    repetitionPenalty: request.repetitionPenalty,
    maxNewTokens,
    seed: request.seed,
    stop: request.stop,
    eosTokenId: weights.config.eosTokenId,
  });
  let tokens = 0;
  // A streamed job's texts, coalesced into few messages (see TokenBatcher).
  const batcher = new TokenBatcher();
  const postBatch = (batch: TokenBatch | null) => {
    if (!batch) return;
    post({ type: 'token', jobId, ...batch, start });
    start = undefined;
  };
  const flush = () => postBatch(batcher.flush(performance.now()));
  for (;;) {
    // The loop is synchronous, so a cancel cannot arrive as a message: read the shared flag between tokens.
    if (cancelled(jobId)) {
      it.return(undefined as never);
      if (stream) flush();
      post({ type: 'cancelled', jobId, promptTokens: ids.length, completionTokens: tokens });
      return;
    }
    const next = it.next();
    if (next.done) {
      const r = next.value;
      if (stream) flush();
      post({
        type: 'done',
        jobId,
        firstTokenMs,
        outcome: {
          text: r.text,
          finishReason: r.finishReason,
          promptTokens: r.promptTokens,
          completionTokens: r.completionTokens,
        },
      });
      return;
    }
    // The final flush of held-back text has id -1 and is not a new token.
    if (next.value.id >= 0 && ++tokens === 1) firstTokenMs = performance.now() - received;
    if (!stream) continue;
    postBatch(batcher.add(next.value.text, tokens, performance.now()));
  }
}

// The worker started with { loadModel: dir } loads the served model for everyone (see loadServedModelInThread),
// while the main thread loads its own code; its tables and weights are in shared memory, so posting shares them.
const loadModel = (workerData as { loadModel?: string } | undefined)?.loadModel;
/** The model this worker loaded (its id and head), if it was the one started to load. */
let loaded: Pick<ServedModel, 'id' | 'head'> | null = null;
if (loadModel !== undefined) {
  import('../model.js')
    .then(({ loadServedModel }) => loadServedModel(loadModel))
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
