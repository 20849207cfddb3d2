// Starts what ships — `bin/tiny-llm.js serve` over dist/ — on a loopback port with a tiny model, for client tests.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './fixtures.js';
import { createTinyModel, type TinyModel } from './tiny-model.js';

/** Whether `npm run build` has produced the compiled server. */
export const builtServerAvailable = existsSync(join(repoRoot, 'dist', 'server', 'server.js'));

export interface BuiltServer {
  /** http://127.0.0.1:port */
  url: string;
  /** The model directory served. */
  modelDir: string;
  /** Everything the process printed so far. */
  output(): string;
  /** SIGTERM, wait for the exit (SIGKILL after 10 s), remove the model; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Spawns the compiled server on port 0 and waits until /ready answers 200; it serves `modelDir`, or a fresh
 * tiny model (removed at stop).
 */
export async function startBuiltServer(
  args: string[] = [],
  env: Record<string, string> = {},
  modelDir?: string,
): Promise<BuiltServer> {
  const model: TinyModel | null = modelDir ? null : await createTinyModel();
  const dir = modelDir ?? (model as TinyModel).dir;
  const child: ChildProcess = spawn(
    process.execPath,
    [
      join(repoRoot, 'bin', 'tiny-llm.js'),
      'serve',
      '--model-dir',
      dir,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--workers',
      '2',
      '--rate-limit',
      '0',
      ...args,
    ],
    {
      cwd: repoRoot,
      env: { ...process.env, LOG_LEVEL: 'info', PORT: '', API_KEY: '', CORS_ORIGIN: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not listen in 30 s:\n${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening:\n${out}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 500; i++) {
    if ((await fetch(`${url}/ready`)).status === 200) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    url,
    modelDir: dir,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      model?.remove();
      return code;
    },
  };
}
