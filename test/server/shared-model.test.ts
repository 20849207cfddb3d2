// Proves the served model is loaded once and shared: weights, tokenizer tables and packed LM head are read by every worker as is.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { wasmArena } from '../../src/engine/wasm/runtime.js';
import { buildApp } from '../../src/server/app.js';
import { loadServedModel, type ServedModel, servedParams } from '../../src/server/model.js';
import { loadModelInWorker, type ModelLoad } from '../../src/server/workers/model-load.js';
import { type PoolOptions, WorkerPool } from '../../src/server/workers/pool.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

let tiny: TinyModel;
let model: ServedModel;

before(async () => {
  tiny = await createTinyModel({ seed: 11 });
  model = await loadServedModel(tiny.dir);
});
after(() => tiny.remove());

function plainTables(m: ServedModel): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(m.tokenizer).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v as Int32Array) : v]),
  );
}

/** A pool of two workers serving `served` (its first worker the one that loaded it, if given), its log lines going to `log`. */
function twoWorkerPool(served: ServedModel, log: PoolOptions['log'], load?: ModelLoad): WorkerPool {
  const { config, params, tokenizer, head, id } = served;
  return new WorkerPool(
    { config, params, tokenizer, head, modelId: id },
    { size: 2, queueLimit: 4, log, firstWorker: load?.takeWorker() },
  );
}

describe('the served model in shared memory', () => {
  it('weights and tokenizer tables live in SharedArrayBuffers; the LM head in a shared WebAssembly memory', () => {
    assert.ok(servedParams(model)?.buffer instanceof SharedArrayBuffer);
    // With the kernels the weights are read straight into their shared memory: no second copy is kept.
    if (model.head) {
      assert.equal(model.params, null, 'a second copy of the weights is kept beside the shared memory');
      assert.equal(servedParams(model)?.buffer, model.head.memory.buffer);
    }
    for (const [key, value] of Object.entries(model.tokenizer)) {
      if (ArrayBuffer.isView(value))
        assert.ok(value.buffer instanceof SharedArrayBuffer, `${key} is not shared`);
    }
    if (wasmArena()) {
      assert.ok(model.head, 'no packed head although WebAssembly kernels run here');
      assert.ok(model.head.memory.buffer instanceof SharedArrayBuffer);
    }
  });

  it('weights built on the shared head give the same logits as weights that pack their own, without a new copy', () => {
    const values = Float32Array.from(servedParams(model) as Float32Array);
    const own = new InferenceWeights(model.config, values);
    const adopted = new InferenceWeights(model.config, model.params, model.head ? { head: model.head } : {});
    if (model.head) assert.equal(adopted.packedHead?.ptr, model.head.ptr, 'the head was packed again');
    const prompt = [464, 2068, 7586, 21831, 18045, 625, 262];
    const a = new InferenceSession(own);
    const b = new InferenceSession(adopted);
    let worst = 0;
    let logitsA = a.prefill(prompt);
    let logitsB = b.prefill(prompt);
    for (let step = 0; step < 8; step++) {
      for (let i = 0; i < logitsA.length; i++) worst = Math.max(worst, Math.abs(logitsA[i] - logitsB[i]));
      logitsA = a.step(step + 100);
      logitsB = b.step(step + 100);
    }
    console.log(`largest logit difference, own head vs shared head: ${worst}`);
    assert.equal(worst, 0);
  });

  it('every worker computes in the one shared head, the worker that loaded the model included', async () => {
    if (!wasmArena()) return;
    const warnings: string[] = [];
    for (const inThread of [false, true]) {
      const load = inThread ? loadModelInWorker(tiny.dir) : undefined;
      const served = load ? await load.model : model;
      const pool = twoWorkerPool(
        served,
        (level, message) => level === 'warn' && warnings.push(message),
        load,
      );
      try {
        await pool.start();
        await pool.allReady();
        assert.equal(pool.readyWorkers, 2);
        assert.equal(pool.workersWithOwnHead, 0, warnings.join('; '));
      } finally {
        await pool.close();
      }
    }
    assert.deepEqual(warnings, []);
  });

  it('the pool is ready once the worker that loaded the model is; the others join (allReady), a crashed one replaced', async () => {
    for (const crash of [false, true]) {
      const load = loadModelInWorker(tiny.dir);
      const served = await load.model;
      const logs: string[] = [];
      const pool = twoWorkerPool(served, (_level, message) => logs.push(message), load);
      try {
        await pool.start();
        const atStart = pool.readyWorkers;
        // The second worker is still booting (the first, which has the model, only builds its views): it dies
        // meanwhile, the first still serves, and a replacement takes its place.
        if (crash) void pool.terminateWorker(1);
        const job = pool.submit({
          prompt: 'Hello',
          maxNewTokens: 4,
          temperature: 1,
          topK: 50,
          topP: 0.95,
          repetitionPenalty: 1,
          seed: 3,
          stop: [],
        });
        assert.equal((await job.result).completionTokens, 4);
        await pool.allReady();
        console.log(
          `${crash ? 'second worker crashed while booting' : 'plain start'}: ${atStart} worker(s) ready when start resolved, then ${pool.readyWorkers}; ${logs.join('; ') || 'no log'}`,
        );
        assert.equal(atStart, 1, 'start waited for the second worker to boot');
        assert.equal(pool.readyWorkers, 2);
        assert.equal(pool.replacements, crash ? 1 : 0);
        if (crash)
          assert.match(
            logs.join('\n'),
            /generation worker 1 exited .*before it was ready; starting a replacement/,
          );
      } finally {
        await pool.close();
      }
    }
  });

  it('loading in a thread of its own gives the same model, and a broken directory the same message', async () => {
    const load = loadModelInWorker(tiny.dir);
    const threaded = await load.model;
    await load.discard();
    assert.equal(threaded.fingerprint, model.fingerprint);
    assert.deepEqual(threaded.config, { ...model.config });
    assert.deepEqual(
      Array.from(servedParams(threaded) as Float32Array),
      Array.from(servedParams(model) as Float32Array),
    );
    assert.deepEqual(plainTables(threaded), plainTables(model));
    const broken = await createTinyModel({ seed: 12 });
    try {
      writeFileSync(join(broken.dir, 'config.json'), '{"model_type": "gpt2"');
      const inMain = await loadServedModel(broken.dir).catch((e: Error) => e);
      const inThread = await loadModelInWorker(broken.dir).model.catch((e: Error) => e);
      assert.ok(inMain instanceof Error && inThread instanceof Error);
      assert.equal(inThread.message, inMain.message);
    } finally {
      broken.remove();
    }
  });

  it('an app serving a model loaded in a thread (which then generates) answers like one given the model', async () => {
    const body = { prompt: 'Hello there', max_new_tokens: 12, seed: 5 };
    const answers: string[] = [];
    for (const inThread of [false, true]) {
      const app = await buildApp({
        model: inThread ? loadModelInWorker(tiny.dir) : model,
        systemPrompt: 'You are a test.',
        workers: 2,
        logger: false,
        rateLimit: false,
        processMetrics: false,
      });
      try {
        await app.generation.allWorkersReady();
        assert.equal(app.generation.pool?.readyWorkers, 2);
        const res = await app.inject({ method: 'POST', url: '/generate', payload: body });
        assert.equal(res.statusCode, 200, res.body);
        answers.push(res.json().response);
      } finally {
        await app.close();
      }
    }
    assert.equal(answers[1], answers[0]);
  });
});
