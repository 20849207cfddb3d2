// Proves a generation worker's side of the protocol: it loads the model when asked, and each job it holds is cancelled
// through its own slot of the cancel flags — a job flagged before it joins the batch is skipped without generating.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { loadModelInWorker } from '../../src/server/workers/model-load.js';
import type { FromWorker, JobRequest, ToWorker } from '../../src/server/workers/protocol.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

let tiny: TinyModel;
let worker: Worker;
const flags = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
/** Every job message's end, by job id. */
const ends = new Map<number, FromWorker>();
let onEnd: (() => void) | null = null;

const job = (maxNewTokens: number): JobRequest => ({
  prompt: 'Hello',
  maxNewTokens,
  temperature: 1,
  topK: 50,
  topP: 0.95,
  repetitionPenalty: 1,
  seed: 1,
  stop: [],
});

function post(message: ToWorker): void {
  worker.postMessage(message);
}

async function ended(jobId: number): Promise<FromWorker> {
  while (!ends.has(jobId)) await new Promise<void>((resolve) => (onEnd = resolve));
  return ends.get(jobId)!;
}

before(async () => {
  // A 1024-token context: a 900-token job runs long enough to act while it does.
  tiny = await createTinyModel({ nPositions: 1024 });
  const load = loadModelInWorker(tiny.dir);
  const model = await load.model;
  worker = load.takeWorker()!;
  worker.on('message', (m: FromWorker) => {
    if (m.type === 'done' || m.type === 'cancelled' || m.type === 'failed' || m.type === 'rejected') {
      ends.set(m.jobId, m);
      onEnd?.();
    }
  });
  const ready = new Promise((resolve) => worker.once('message', resolve));
  const { config, params, tokenizer, head, id } = model;
  post({ type: 'init', init: { config, params, tokenizer, head, modelId: id, cancel: flags, batch: 2 } });
  assert.deepEqual(await ready, { type: 'ready', ownHead: false });
});
after(async () => {
  await worker?.terminate();
  tiny?.remove();
});

describe('a generation worker', () => {
  it('skips a waiting job flagged in its own slot, and stops the running one flagged in its slot', async () => {
    const started = new Promise<void>((resolve) => {
      const onToken = (m: FromWorker) => {
        if (m.type !== 'token' || m.jobId !== 11) return;
        worker.off('message', onToken);
        resolve();
      };
      worker.on('message', onToken);
    });
    post({ type: 'job', jobId: 11, slot: 0, request: job(900), stream: true });
    post({ type: 'job', jobId: 12, slot: 1, request: job(5), stream: false });
    Atomics.store(flags, 1, 12);
    // The first generates (it has posted text) when its flag is set.
    await started;
    Atomics.store(flags, 0, 11);
    const running = await ended(11);
    const waiting = await ended(12);
    console.log(`running job: ${JSON.stringify(running)}; waiting job: ${JSON.stringify(waiting)}`);
    assert.equal(running.type, 'cancelled');
    assert.ok(running.type === 'cancelled' && running.completionTokens > 0, 'stopped while it ran');
    assert.ok(running.type === 'cancelled' && running.completionTokens < 900, 'stopped before its end');
    assert.deepEqual(waiting, { type: 'cancelled', jobId: 12, promptTokens: 1, completionTokens: 0 });
  });

  it("a flag in another job's slot stops nothing: the id must match the slot's job", async () => {
    Atomics.store(flags, 0, 0);
    Atomics.store(flags, 1, 0);
    // Job 21 runs in slot 1; slot 0 names it, which is not its slot.
    Atomics.store(flags, 0, 21);
    post({ type: 'job', jobId: 21, slot: 1, request: job(5), stream: false });
    const end = await ended(21);
    assert.equal(end.type, 'done');
    assert.equal(end.type === 'done' && end.outcome.completionTokens, 5);
  });
});
