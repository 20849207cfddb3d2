// Preloaded (`node --require`) into the built server by tests that cannot reach into its worker pool: SIGUSR2 ends a generation worker as a crash would; with WORKER_FAULTS=no-restart it ends them all and no worker started afterwards ever becomes ready.
'use strict';
const threads = require('node:worker_threads');
const { syncBuiltinESMExports } = require('node:module');

// Worker threads inherit this preload; only the main thread starts (and so can end) generation workers.
if (threads.isMainThread) {
  const Original = threads.Worker;
  /** Workers started by the main thread and still running, oldest first. */
  const live = [];
  let broken = false;

  class FaultyWorker extends Original {
    constructor(file, options) {
      // After a no-restart fault a worker exits at once, before it could report ready.
      if (broken) super('process.exit(70)', { eval: true });
      else super(file, options);
      live.push(this);
      this.once('exit', () => live.splice(live.indexOf(this), 1));
    }
  }
  threads.Worker = FaultyWorker;
  syncBuiltinESMExports();

  process.on('SIGUSR2', () => {
    const noRestart = process.env.WORKER_FAULTS === 'no-restart';
    if (noRestart) broken = true;
    // The oldest is the worker that loaded the model (the pool's first).
    for (const worker of noRestart ? [...live] : live.slice(0, 1)) void worker.terminate();
  });
}
