// A generation worker thread: builds the model once from shared weights, then runs one job at a time.
import { parentPort, workerData } from 'node:worker_threads';
import { InferenceSession, InferenceWeights } from '../../engine/inference.js';
import { generate } from '../../generate/generate.js';
import { Gpt2Tokenizer } from '../../tokenizer/gpt2-bpe.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('generation-worker.ts runs only as a worker thread');

const init = workerData as WorkerInit;
const weights = new InferenceWeights(init.config, init.params);
const tokenizer = new Gpt2Tokenizer(init.tokenizer);
// One session per worker: its KV cache is allocated once and reused by every job.
const session = new InferenceSession(weights);
const context = weights.config.nPositions;

function post(message: FromWorker): void {
  port!.postMessage(message);
}

function cancelled(jobId: number): boolean {
  return Atomics.load(init.cancel, 0) === jobId;
}

function run({ jobId, request }: Extract<ToWorker, { type: 'job' }>): void {
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
    post({ type: 'cancelled', jobId, completionTokens: 0 });
    return;
  }
  post({ type: 'start', jobId, promptTokens: ids.length, maxNewTokens });
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
  for (;;) {
    // The loop is synchronous, so a cancel cannot arrive as a message: read the shared flag between tokens.
    if (cancelled(jobId)) {
      it.return(undefined as never);
      post({ type: 'cancelled', jobId, completionTokens: tokens });
      return;
    }
    const next = it.next();
    if (next.done) {
      const r = next.value;
      post({
        type: 'done',
        jobId,
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
    if (next.value.id >= 0) tokens++;
    post({ type: 'token', jobId, text: next.value.text });
  }
}

port.on('message', (message: ToWorker) => {
  if (message.type !== 'job') return;
  try {
    run(message);
  } catch (err) {
    post({ type: 'failed', jobId: message.jobId, message: err instanceof Error ? err.message : String(err) });
  }
});
post({ type: 'ready' });
