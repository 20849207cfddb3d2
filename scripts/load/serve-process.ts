// Starts a real `tiny-llm serve` child process on 127.0.0.1 (from source or the compiled bin) for load and fault runs.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ServeOptions {
  /** The model directory (`--model-dir`); give modelUri instead for a model fetched at start. */
  modelDir?: string;
  /** gs://BUCKET/PREFIX (`--model-uri`). */
  modelUri?: string;
  workers?: number;
  queueLimit?: number;
  /** Requests per client per minute; 0 turns the limit off; absent keeps the server's default. */
  rateLimit?: number;
  /** Run bin/tiny-llm.js (needs `npm run build`) instead of the TypeScript source under tsx. */
  compiled?: boolean;
  logLevel?: string;
  /** Node options before the script (e.g. `--require` of a test's preload). */
  nodeArgs?: string[];
  /** Environment variables added to this process's. */
  env?: NodeJS.ProcessEnv;
  /** More `serve` flags. */
  args?: string[];
}

export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
  /** Everything the server wrote so far (the last 256 KiB). */
  output(): string;
  /** Log lines written so far. */
  lines(): number;
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const KEEP = 256 * 1024;

/** Spawns the server on port 0 and resolves once it logs the port it listens on. */
export function startServeProcess(options: ServeOptions): Promise<ServeProcess> {
  const model =
    options.modelUri !== undefined
      ? ['--model-uri', options.modelUri]
      : options.modelDir !== undefined
        ? ['--model-dir', options.modelDir]
        : [];
  const args = ['serve', ...model, '--port', '0', '--host', '127.0.0.1'];
  if (options.workers !== undefined) args.push('--workers', String(options.workers));
  if (options.queueLimit !== undefined) args.push('--queue-limit', String(options.queueLimit));
  if (options.rateLimit !== undefined) args.push('--rate-limit', String(options.rateLimit));
  args.push(...(options.args ?? []));
  const bin = path.join(REPO_ROOT, 'bin', 'tiny-llm.js');
  if (options.compiled && !existsSync(path.join(REPO_ROOT, 'dist', 'cli', 'cli.cjs')))
    throw new Error('the compiled server is missing: run `npm run build` first');
  const nodeArgs = options.compiled
    ? [...(options.nodeArgs ?? []), bin, ...args]
    : [
        ...(options.nodeArgs ?? []),
        '--import',
        'tsx',
        path.join(REPO_ROOT, 'src', 'cli', 'main.ts'),
        ...args,
      ];
  const child = spawn(process.execPath, nodeArgs, {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: '', LOG_LEVEL: options.logLevel ?? 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let lines = 0;
  const append = (d: Buffer) => {
    const s = d.toString();
    for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) lines++;
    out = (out + s).slice(-KEEP);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server did not listen within 60 s:\n${out.slice(-4000)}`));
    }, 60_000);
    const onData = () => {
      const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      const port = Number(m[1]);
      resolve({
        child,
        pid: child.pid!,
        port,
        url: `http://127.0.0.1:${port}`,
        output: () => out,
        lines: () => lines,
        exited,
        async stop(graceMs = 15_000) {
          if (child.exitCode !== null || child.signalCode !== null) return exited;
          child.kill('SIGTERM');
          const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
          const result = await exited;
          clearTimeout(kill);
          return result;
        },
      });
    };
    child.stdout!.on('data', onData);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code ?? signal}) before listening:\n${out.slice(-4000)}`));
    });
  });
}

/** Resident memory of a process in bytes (VmRSS: all its threads, the generation workers included). */
export function residentBytes(pid: number): { rss: number; peak: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: kib('VmRSS') * 1024, peak: kib('VmHWM') * 1024 };
  } catch {
    return null;
  }
}

/**
 * Polls /ready until it answers 200 with every worker up (the server is ready once one can generate; a load
 * is measured on the whole pool).
 */
export async function waitReady(url: string, timeoutMs = 60_000): Promise<void> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    const res = await fetch(`${url}/ready`).catch(() => null);
    if (res?.status === 200) {
      const { workers } = (await res.json()) as { workers?: { ready: number; total: number } };
      if (!workers || workers.ready >= workers.total) return;
    } else await res?.body?.cancel();
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${url} was not ready with every worker within ${timeoutMs} ms`);
}
