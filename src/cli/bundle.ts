// What the CLI's bundle (dist/cli/cli.cjs) gives its launcher: the command line, and the warm-up the build runs before saving the bundle's code cache.
import type { Worker } from 'node:worker_threads';
import { launch } from '../server/startup/serve.js';
import { runCli } from './main.js';

/**
 * Runs the command line. `codeCache` says what the launcher's code cache did, for the start-up log;
 * `modelWorker` is the generation worker it booted for a serving command.
 */
export function start(codeCache: string, modelWorker: Worker | null): void {
  launch.codeCache = codeCache;
  launch.modelWorker = modelWorker;
  runCli();
}

/** The build's warm-up (loaded only when asked: a start must not load the HTTP stack before its model worker). */
export async function warmUp(): Promise<void> {
  const { warmUp: run } = await import('../server/startup/warm-up.js');
  return run();
}
