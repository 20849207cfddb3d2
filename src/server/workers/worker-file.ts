// Which file a generation worker thread runs: its TypeScript source under tsx, or its bundle beside the CLI's in dist/cli/.
import { Worker } from 'node:worker_threads';

/** Run from source under tsx (this file is .ts), or from the build (bundled into dist/cli/cli.cjs). */
const fromSource = import.meta.url.endsWith('.ts');

/** The worker's code: generation-worker.ts beside this file, or the bundle `npm run build` writes beside the CLI's. */
export const generationWorkerUrl = new URL(
  fromSource ? './generation-worker.ts' : './generation-worker.cjs',
  import.meta.url,
);

/**
 * Starts a generation worker thread. Node 20 does not apply the parent's `--import tsx` loader hooks inside
 * worker threads, so from source the worker first registers tsx itself.
 */
export function startGenerationWorker(): Worker {
  if (!fromSource) return new Worker(generationWorkerUrl);
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(generationWorkerUrl.href)}); });`;
  return new Worker(bootstrap, { eval: true });
}
