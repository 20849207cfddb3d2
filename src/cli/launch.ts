// The built CLI's entry (bin/tiny-llm.js imports it): runs the CLI's bundle, dist/cli/cli.cjs, through V8's code cache.
import type { Worker } from 'node:worker_threads';
import { type CachedScript, runCachedCommonJs } from '../server/startup/code-cache.js';
import { bootModelWorker } from '../server/startup/model-worker.js';

/** What the bundle exports (src/cli/bundle.ts). */
export interface CliBundle {
  start(codeCache: string, modelWorker: Worker | null): void;
  warmUp(): Promise<void>;
}

/**
 * Runs this process's command line. For a serving command the worker that will load the model boots first,
 * so its start overlaps this thread's loading of the bundle (the HTTP stack is in it).
 */
export function runCli(): void {
  const modelWorker = bootModelWorker(process.argv.slice(2));
  const { cli, bundle } = loadCli();
  cli.start(bundle.cache, modelWorker);
}

/** Loads the bundle beside this file; `bundle.cache` says whether V8 took its code cache, `bundle.save` writes it. */
export function loadCli(): { cli: CliBundle; bundle: CachedScript } {
  const bundle = runCachedCommonJs(new URL('./cli.cjs', import.meta.url));
  return { cli: bundle.exports as unknown as CliBundle, bundle };
}
