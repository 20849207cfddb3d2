// Cold start and memory of the compiled server: spawn → /ready 200 → first /generate reply, and RSS while serving.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from './lib/free-port.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface ColdStartOptions {
  modelDir: string;
  /** Generation workers (`--workers`). */
  workers: number;
  /** Spawns to measure. */
  runs: number;
  /** The CLI entry to spawn (default: this checkout's bin/tiny-llm.js, which runs dist/). */
  bin?: string;
  /** The Node executable that runs it (default: the one running this script). */
  node?: string;
  /** Requests sent after the first reply, before RSS is read (default 8, half of them concurrently). */
  requests?: number;
  /** Give up on one spawn after this long (default 60 s). */
  timeoutMs?: number;
  /**
   * 'image' (default): this environment less NODE_EXTRA_CA_CERTS, as the container image runs (it sets none).
   * 'host': this environment as it is. Where NODE_EXTRA_CA_CERTS names a CA bundle (this machine's does),
   * every Node process parses it before running any code, which lengthens every start.
   */
  environment?: 'image' | 'host';
}

/** The server's environment for a spawn (see ColdStartOptions.environment). */
export function serverEnvironment(environment: 'image' | 'host'): NodeJS.ProcessEnv {
  // With the memory setting the image runs with (docker/Dockerfile, and `npm start`).
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '',
    WORKERS: '',
    LOG_LEVEL: 'warn',
    MALLOC_ARENA_MAX: '2',
  };
  if (environment === 'image') delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

export interface ColdStartResult {
  /** Spawn → first 200 from GET /ready, per run. */
  readyMs: number[];
  /** Spawn → first complete POST /generate reply (sent as soon as /ready answered 200), per run. */
  firstReplyMs: number[];
  /** Process resident memory (VmRSS, all threads) after the extra requests, per run. */
  rssMiB: number[];
  /** CPU time (user + system, all threads) the server had used when /ready first answered 200, per run: less noisy than wall time on a shared machine. */
  readyCpuMs: number[];
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of an empty list');
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** VmRSS of a process in MiB, or NaN when /proc cannot be read. */
export function residentMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN);
    return kib / 1024;
  } catch {
    return Number.NaN;
  }
}

/** User + system CPU time of a process in ms (10 ms resolution), or NaN when /proc cannot be read. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function generate(url: string, seed: number): Promise<void> {
  const res = await fetch(`${url}/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'What is tiny-llm?', max_new_tokens: 50, seed }),
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`/generate answered ${res.status}: ${body.slice(0, 200)}`);
}

/**
 * One spawn: times to ready (a worker can generate) and to the first reply, then RSS with every worker up and
 * after more requests; always stops the child.
 */
async function measureOnce(
  options: ColdStartOptions,
): Promise<{ readyMs: number; firstReplyMs: number; rssMiB: number; readyCpuMs: number }> {
  const bin = options.bin ?? path.join(REPO_ROOT, 'bin', 'tiny-llm.js');
  const timeoutMs = options.timeoutMs ?? 60_000;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = [bin, 'serve', '--model-dir', options.modelDir, '--port', String(port)];
  args.push('--host', '127.0.0.1', '--workers', String(options.workers));
  const started = performance.now();
  const child = spawn(options.node ?? process.execPath, args, {
    env: serverEnvironment(options.environment ?? 'image'),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      resolve();
    }),
  );
  try {
    let readyMs = -1;
    let readyCpuMs = Number.NaN;
    while (readyMs < 0) {
      if (exited) throw new Error(`the server exited before it was ready:\n${stderr}`);
      if (performance.now() - started > timeoutMs)
        throw new Error(`the server was not ready within ${timeoutMs} ms:\n${stderr}`);
      const res = await fetch(`${url}/ready`).catch(() => null);
      if (res?.status === 200) {
        readyMs = performance.now() - started;
        readyCpuMs = cpuMs(child.pid!);
      }
      await res?.body?.cancel();
      if (readyMs < 0) await sleep(res ? 2 : 5);
    }
    await generate(url, 1);
    const firstReplyMs = performance.now() - started;
    // /ready is 200 once one worker can generate; memory is read with every worker up.
    for (;;) {
      const workers = (
        (await (await fetch(`${url}/ready`)).json()) as { workers?: { ready: number; total: number } }
      ).workers;
      if (!workers || workers.ready >= workers.total) break;
      if (performance.now() - started > timeoutMs)
        throw new Error(
          `only ${workers.ready} of ${workers.total} workers were up within ${timeoutMs} ms:\n${stderr}`,
        );
      await sleep(5);
    }
    const requests = options.requests ?? 8;
    const half = Math.ceil(requests / 2);
    for (let i = 0; i < half; i++) await generate(url, 2 + i);
    await Promise.all(Array.from({ length: requests - half }, (_, i) => generate(url, 100 + i)));
    return { readyMs, firstReplyMs, rssMiB: residentMiB(child.pid!), readyCpuMs };
  } finally {
    if (!exited) {
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(kill);
    }
  }
}

/** Spawns the compiled server `runs` times, one after another, and returns each run's figures. */
export async function measureColdStart(options: ColdStartOptions): Promise<ColdStartResult> {
  if (!Number.isInteger(options.runs) || options.runs < 1) throw new RangeError('runs must be >= 1');
  if (!Number.isInteger(options.workers) || options.workers < 1) throw new RangeError('workers must be >= 1');
  const bin = options.bin ?? path.join(REPO_ROOT, 'bin', 'tiny-llm.js');
  const dist = path.join(path.dirname(bin), '..', 'dist');
  if (!existsSync(bin) || !existsSync(dist))
    throw new Error(`${bin} or ${dist} is missing: run \`npm run build\` first`);
  if (!existsSync(path.join(options.modelDir, 'config.json')))
    throw new Error(`${options.modelDir} holds no model (config.json is missing)`);
  const result: ColdStartResult = { readyMs: [], firstReplyMs: [], rssMiB: [], readyCpuMs: [] };
  for (let i = 0; i < options.runs; i++) {
    const r = await measureOnce(options);
    result.readyMs.push(r.readyMs);
    result.firstReplyMs.push(r.firstReplyMs);
    result.rssMiB.push(r.rssMiB);
    result.readyCpuMs.push(r.readyCpuMs);
  }
  return result;
}

const usage = `usage: node --import tsx scripts/measure-cold-start.ts [options]

  --model-dir D   model to serve (default $MODEL_DIR or ./model)
  --workers N     generation workers (default 2)
  --runs N        spawns, medians printed (default 7)
  --bin FILE      CLI entry to spawn (default bin/tiny-llm.js: the compiled server in dist/)
  --compare [NAME=]FILE
                  another CLI entry (e.g. an older build, or a variant of this one) measured interleaved
                  with --bin, one spawn of each in turn; repeatable
  --requests N    requests after the first reply, before RSS is read (default 8)
  --node FILE     the Node executable for the spawns (default: the one running this script); its build's
                  code cache must be written by that Node (see bench/lib/image-runtime.ts)
  --host-env      spawn with this environment as it is; by default NODE_EXTRA_CA_CERTS is left out, as
                  in the container image (a CA bundle named there is parsed at every Node start)
  --json          print the raw figures as JSON too`;

function summary(label: string, r: ColdStartResult, workers: number): string {
  const f = (x: number) => x.toFixed(0).padStart(6);
  const rss = median(r.rssMiB);
  return `${label.padEnd(12)} ready ${f(median(r.readyMs))} ms (CPU ${f(median(r.readyCpuMs))} ms)   first reply ${f(median(r.firstReplyMs))} ms   RSS ${f(rss)} MiB (${(rss / workers).toFixed(1)} per worker)   [ready min ${Math.min(...r.readyMs).toFixed(0)} max ${Math.max(...r.readyMs).toFixed(0)}]`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'model-dir': { type: 'string' },
      workers: { type: 'string' },
      runs: { type: 'string' },
      bin: { type: 'string' },
      compare: { type: 'string', multiple: true },
      requests: { type: 'string' },
      node: { type: 'string' },
      'host-env': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const modelDir = path.resolve(values['model-dir'] ?? process.env.MODEL_DIR ?? 'model');
  const workers = Number(values.workers ?? 2);
  const runs = Number(values.runs ?? 7);
  if (!Number.isInteger(workers) || workers < 1)
    throw new Error(`--workers must be >= 1, got ${values.workers}`);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be >= 1, got ${values.runs}`);
  const requests = Number(values.requests ?? 8);
  if (!Number.isInteger(requests) || requests < 0)
    throw new Error(`--requests must be >= 0, got ${values.requests}`);
  const environment = values['host-env'] ? 'host' : 'image';
  const bins: Array<[string, string | undefined]> = [['this', values.bin && path.resolve(values.bin)]];
  for (const [i, compare] of (values.compare ?? []).entries()) {
    const named = /^([^=/]+)=(.+)$/.exec(compare);
    bins.push([named?.[1] ?? `compare ${i + 1}`, path.resolve(named?.[2] ?? compare)]);
  }
  const results = bins.map(
    (): ColdStartResult => ({ readyMs: [], firstReplyMs: [], rssMiB: [], readyCpuMs: [] }),
  );
  // Interleaved one spawn at a time, the order reversed every other round, so a busy moment on a shared machine
  // hits every build alike.
  for (let i = 0; i < runs; i++) {
    const order = [...bins.keys()];
    if (i % 2) order.reverse();
    for (const b of order) {
      const bin = bins[b][1];
      const r = await measureColdStart({
        modelDir,
        workers,
        runs: 1,
        bin,
        environment,
        node: values.node,
        requests,
      });
      results[b].readyMs.push(...r.readyMs);
      results[b].firstReplyMs.push(...r.firstReplyMs);
      results[b].rssMiB.push(...r.rssMiB);
      results[b].readyCpuMs.push(...r.readyCpuMs);
    }
  }
  const envText =
    environment === 'host' ? 'this environment as it is' : 'the image environment (no NODE_EXTRA_CA_CERTS)';
  console.log(`${modelDir}, ${workers} workers, ${envText}, median of ${runs} spawns:`);
  for (const [b, [label]] of bins.entries()) console.log(summary(label, results[b], workers));
  if (values.json) console.log(JSON.stringify(Object.fromEntries(bins.map(([l], b) => [l, results[b]]))));
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      console.error(err instanceof Error ? err.message : String(err));
      process.exitCode = 1;
    },
  );
}
