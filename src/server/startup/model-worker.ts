// The generation worker that will load the model, booted by the built CLI's launcher before it loads the CLI's bundle: its start overlaps the main thread's.
import type { Worker } from 'node:worker_threads';
import { startGenerationWorker } from '../workers/worker-file.js';

/** The commands that serve, and so load a model first. */
const SERVING = new Set(['serve', 'start']);

/**
 * Boots a generation worker when `argv` runs a serving command, or returns null. The worker waits for its
 * model directory (see ModelLoad); until it gets one it does not keep the process alive, so a command that
 * ends without serving (bad flags, a failed training) does not wait for it.
 */
export function bootModelWorker(argv: readonly string[]): Worker | null {
  if (!SERVING.has(argv[0] ?? '') || argv.includes('--help') || argv.includes('-h')) return null;
  const worker = startGenerationWorker();
  worker.unref();
  return worker;
}
