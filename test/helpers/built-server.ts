// Starts the server as the image runs it (`bin/tiny-llm.js serve` over dist/, bundle and code cache included) on a small model, for the suites that test what ships.
import { readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  REPO_ROOT,
  type ServeOptions,
  type ServeProcess,
  startServeProcess,
  waitReady,
} from '../../scripts/load/serve-process.js';
import { createTinyModel, type TinyModel } from './tiny-model.js';

/** What the build's output is made from: a change here after `npm run build` leaves dist/ stale. */
const SOURCES = [
  'src',
  'bin',
  'scripts/build-cli.mjs',
  'scripts/record-validators.ts',
  'scripts/warm-code-cache.mjs',
];

function newestIn(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = 0;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestIn(join(path, entry)));
  return newest;
}

/**
 * Throws, naming the command to run, unless dist/ holds a build at least as new as every source it is made
 * from: a suite that tests the build must never pass or fail on an older one.
 */
export function assertBuildCurrent(): void {
  const bundle = join(REPO_ROOT, 'dist', 'cli', 'cli.cjs');
  let built: number;
  try {
    built = statSync(bundle).mtimeMs;
  } catch {
    throw new Error(`${bundle} is missing: run \`npm run build\` (these tests run the built server)`);
  }
  const newest = Math.max(...SOURCES.map((s) => newestIn(join(REPO_ROOT, s))));
  if (newest > built)
    throw new Error(
      'dist/ is older than the sources: run `npm run build` (these tests run the built server, as the image does)',
    );
}

export interface BuiltServer extends ServeProcess {
  /** The tiny model written for it (null when it serves a given directory). */
  model: TinyModel | null;
  /** The model directory served. */
  modelDir: string;
  /** Sends SIGTERM, waits for the exit (SIGKILL after 15 s) and removes the tiny model. */
  close(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns `bin/tiny-llm.js serve --port 0` (2 workers, no rate limit unless asked) on `options.modelDir`, or on a
 * tiny model written for it (see createTinyModel), and resolves once /ready answers 200 with every worker up.
 */
export async function startBuiltServer(
  options: Partial<Omit<ServeOptions, 'compiled'>> & {
    /** The system prompt, written to a file the server reads through $SYSTEM_PROMPT_FILE. */
    systemPrompt?: string;
  } = {},
  modelOptions: Parameters<typeof createTinyModel>[0] = {},
): Promise<BuiltServer> {
  assertBuildCurrent();
  const model = options.modelDir ? null : await createTinyModel(modelOptions);
  const modelDir = options.modelDir ?? model!.dir;
  const { systemPrompt, ...serveOptions } = options;
  const promptFile =
    systemPrompt === undefined ? null : join(tmpdir(), `tiny-llm-prompt-${process.pid}-${Date.now()}.txt`);
  const removeAll = () => {
    model?.remove();
    if (promptFile) rmSync(promptFile, { force: true });
  };
  let server: ServeProcess;
  try {
    const env = { ...serveOptions.env };
    if (promptFile) {
      writeFileSync(promptFile, systemPrompt ?? '');
      env.SYSTEM_PROMPT_FILE = promptFile;
    }
    server = await startServeProcess({
      workers: 2,
      rateLimit: 0,
      ...serveOptions,
      env,
      modelDir,
      compiled: true,
    });
  } catch (err) {
    removeAll();
    throw err;
  }
  try {
    await waitReady(server.url);
  } catch (err) {
    await server.stop();
    removeAll();
    throw new Error(`${(err as Error).message}\n${server.output().slice(-2000)}`);
  }
  return {
    ...server,
    model,
    modelDir,
    async close() {
      const exit = await server.stop();
      removeAll();
      return exit;
    },
  };
}
