// The second data-parallel replica (see data-parallel.ts): waits for a batch half in shared memory,
// computes its gradient into the shared gradient buffer and reports loss and counted targets.
import { workerData } from 'node:worker_threads';
import { GPT2 } from '../engine/model.js';
import { countTargets } from '../engine/ops.js';
import { CTRL, type ReplicaInit, STATE, STOP } from './data-parallel.js';

const init = workerData as ReplicaInit;
const control = new Int32Array(init.control);
const results = new Float64Array(init.results);
const tokens = new Int32Array(init.tokens);
const half = tokens.length / 2;

/** Reports a failure: the message goes into the token buffer (the main thread reads it after the state). */
function failed(err: unknown): void {
  const text = new TextEncoder().encode((err as Error)?.message ?? String(err)).slice(0, 4095);
  new Uint8Array(init.tokens, 0, 4096).fill(0).set(text);
  Atomics.store(control, CTRL.state, STATE.failed);
  Atomics.notify(control, CTRL.state);
  Atomics.add(control, CTRL.done, 1);
  Atomics.notify(control, CTRL.done);
}

try {
  const model = new GPT2(init.config, new Float32Array(init.params));
  model.setGradientBuffer(new Float32Array(init.grads));
  if (init.subsetIds) model.setTrainingVocab(init.subsetIds, { rest: init.subsetRest });
  else model.setRestColumn(init.restTokens);
  model.training = true;
  Atomics.store(control, CTRL.state, STATE.ready);
  Atomics.notify(control, CTRL.state);
  let seen = 0;
  for (;;) {
    Atomics.wait(control, CTRL.command, seen);
    const command = Atomics.load(control, CTRL.command);
    if (command === STOP) break;
    if (command === seen) continue;
    seen = command;
    const B = Atomics.load(control, CTRL.B);
    const T = Atomics.load(control, CTRL.T);
    const inputs = tokens.slice(0, B * T);
    const targets = tokens.slice(half, half + B * T);
    model.zeroGrad();
    const loss = model.forward(inputs, B, T, targets);
    if (Number.isFinite(loss)) model.backward();
    results[0] = loss;
    results[1] = countTargets(targets, B * T);
    Atomics.store(control, CTRL.done, seen);
    Atomics.notify(control, CTRL.done);
  }
} catch (err) {
  failed(err);
}
