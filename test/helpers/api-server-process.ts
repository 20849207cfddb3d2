// Starts what ships — `bin/tiny-llm.js serve` over dist/ — on a loopback port for the client tests: the built-server helper, with more flags and environment.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startBuiltServer as startServer } from './built-server.js';
import { repoRoot } from './fixtures.js';

/** Whether `npm run build` has produced the built CLI. */
export const builtServerAvailable = existsSync(join(repoRoot, 'dist', 'cli', 'cli.cjs'));

export interface BuiltServer {
  /** http://127.0.0.1:port */
  url: string;
  /** The model directory served. */
  modelDir: string;
  /** Everything the process printed so far. */
  output(): string;
  /** SIGTERM, wait for the exit, remove the tiny model (if one was made); resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Spawns the built server with the `serve` flags `args` (this environment's API key and CORS origins cleared
 * unless `env` sets them) on `modelDir`, or on a fresh tiny model; resolves once /ready answers 200.
 */
export async function startBuiltServer(
  args: string[] = [],
  env: Record<string, string> = {},
  modelDir?: string,
): Promise<BuiltServer> {
  const server = await startServer({
    args,
    env: { API_KEY: '', CORS_ORIGIN: '', ...env },
    modelDir,
  });
  return {
    url: server.url,
    modelDir: server.modelDir,
    output: server.output,
    stop: async () => (await server.close()).code,
  };
}
