// Server batching section of `npm run bench -- --model M --only server-batch`: the compiled server on one model, f32 and q8_0: load to /ready, resident memory with 2 workers, and aggregate tokens/s of 1 and 8 concurrent streams with their time to first token.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../scripts/lib/free-port.js';
import { parameterLayout } from '../src/engine/layout.js';
import type { BenchModel } from './lib/models.js';
import { repoRoot } from './lib/models.js';
import { median, quantile } from './lib/stats.js';
import { printTable } from './lib/table.js';

type Skip = (what: string, why: unknown) => void;
type Format = 'f32' | 'q8_0';

const WORKERS = 2;
const STREAMS = [1, 8];
/** Requests each client sends one after the other in a cell. */
const REQUESTS_PER_CLIENT: Record<number, number> = { 1: 4, 8: 2 };
const MAX_TOKENS = 64;
const READY_RUNS = 3;
/** Issue 18's targets: 8 streams ≥ 3× one stream (f32); /ready ≤ 1 s; RSS ≤ weights × 1.15 + 150 MiB. */
const TARGET_RATIO = 3;
const TARGET_READY_MS = 1000;

export interface ServerBatchResults {
  model: string;
  weightsMiB: Record<Format, number>;
  ready: { format: Format; readyMs: number; rssMiB: number; rssTargetMiB: number }[];
  streams: {
    format: Format;
    streams: number;
    requests: number;
    tokens: number;
    tokensPerS: number;
    ttftP50Ms: number;
    ttftP99Ms: number;
    rssPeakMiB: number;
  }[];
  ratios: Record<Format, number>;
  targets: Record<string, { value: number; target: string; pass: boolean }>;
}

/** VmRSS of a process in MiB (all its threads), NaN when unreadable. */
function rssMiB(pid: number): number {
  try {
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kib ? Number(kib) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

interface Served {
  child: ChildProcess;
  url: string;
  readyMs: number;
  stop(): Promise<void>;
}

/** Spawns the compiled server and resolves once /ready answers 200 (every worker up), with the time it took. */
async function serve(dir: string, format: Format): Promise<Served> {
  const port = await freePort();
  const args = [join(repoRoot, 'bin', 'tiny-llm.js'), 'serve', '--model-dir', dir, '--port', String(port)];
  args.push('--host', '127.0.0.1', '--workers', String(WORKERS), '--rate-limit', '0');
  if (format === 'q8_0') args.push('--quantize', 'q8_0');
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    cwd: repoRoot,
    // As the image runs it (glibc otherwise keeps a malloc arena per thread).
    env: { ...process.env, PORT: '', LOG_LEVEL: 'warn', MALLOC_ARENA_MAX: '2' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d) => (err = (err + d).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}): ${err}`);
    if (performance.now() - started > 120_000) {
      await stop();
      throw new Error('the server was not ready within 120 s');
    }
    const ok = await fetch(`${url}/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return { child, url, readyMs: performance.now() - started, stop };
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One streamed completion: its tokens and the time to its first text. */
async function stream(url: string, seed: number): Promise<{ tokens: number; ttftMs: number }> {
  const sent = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      prompt: 'The history of the city begins',
      max_tokens: MAX_TOKENS,
      seed,
      temperature: 1,
      top_k: 50,
      top_p: 0.95,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (res.status !== 200 || !res.body) throw new Error(`status ${res.status}: ${await res.text()}`);
  let ttftMs = -1;
  let tokens = -1;
  let held = '';
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    held += decoder.decode(value, { stream: true });
    let end = held.indexOf('\n\n');
    while (end >= 0) {
      const event = held.slice(0, end);
      held = held.slice(end + 2);
      end = held.indexOf('\n\n');
      const data = event.startsWith('data: ') ? event.slice(6) : '';
      if (!data || data === '[DONE]') continue;
      const json = JSON.parse(data);
      if (json.error) throw new Error(`stream error: ${JSON.stringify(json.error)}`);
      if (ttftMs < 0 && json.choices?.[0]?.text) ttftMs = performance.now() - sent;
      if (json.usage) tokens = json.usage.completion_tokens;
    }
  }
  if (tokens < 0) throw new Error('the stream reported no usage');
  return { tokens, ttftMs };
}

/** `clients` clients each sending their requests in turn: aggregate tokens/s over the wall time, TTFTs, peak RSS. */
async function cell(served: Served, clients: number) {
  const ttfts: number[] = [];
  let tokens = 0;
  let rssPeak = 0;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, rssMiB(served.child.pid!));
  }, 50);
  const start = performance.now();
  try {
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let i = 0; i < REQUESTS_PER_CLIENT[clients]; i++) {
          const r = await stream(served.url, 1000 * c + i + 1);
          tokens += r.tokens;
          ttfts.push(r.ttftMs);
        }
      }),
    );
  } finally {
    clearInterval(sampler);
  }
  const seconds = (performance.now() - start) / 1000;
  return {
    requests: ttfts.length,
    tokens,
    tokensPerS: tokens / seconds,
    ttftP50Ms: median(ttfts),
    ttftP99Ms: quantile(ttfts, 0.99),
    rssPeakMiB: rssPeak,
  };
}

/** Reads every file of the model once, so the loads are timed from a warm page cache. */
function warmPageCache(dir: string): void {
  const files = statSync(dir).isFile() ? [dir] : [join(dir, 'model.safetensors'), join(dir, 'config.json')];
  for (const f of files) spawnSync('sh', ['-c', 'cat "$1" > /dev/null', 'sh', f], { stdio: 'ignore' });
}

/** Bytes of the served weights per format: f32 is 4 bytes a parameter; q8_0 stores its matrices in 34-byte blocks of 32. */
function weightsMiB(model: BenchModel): Record<Format, number> {
  const layout = parameterLayout(model.config);
  let q8 = 0;
  for (const t of layout.tensors) {
    const matrix = t.conv1d || t.hfName === 'transformer.wte.weight' || t.hfName === 'lm_head.weight';
    q8 += matrix ? (t.size / 32) * 34 : t.size * 4;
  }
  return { f32: (layout.total * 4) / 2 ** 20, q8_0: q8 / 2 ** 20 };
}

export async function benchServerBatch(
  model: BenchModel,
  skip: Skip,
): Promise<ServerBatchResults | undefined> {
  const weights = weightsMiB(model);
  const out: ServerBatchResults = {
    model: model.name,
    weightsMiB: weights,
    ready: [],
    streams: [],
    ratios: { f32: Number.NaN, q8_0: Number.NaN },
    targets: {},
  };
  for (const format of ['f32', 'q8_0'] as const) {
    try {
      warmPageCache(model.dir);
      const readies: number[] = [];
      const rss: number[] = [];
      for (let i = 0; i < READY_RUNS; i++) {
        const s = await serve(model.dir, format);
        readies.push(s.readyMs);
        // Resident memory once every worker is up and idle.
        await new Promise((r) => setTimeout(r, 500));
        rss.push(rssMiB(s.child.pid!));
        if (i < READY_RUNS - 1) {
          await s.stop();
          continue;
        }
        try {
          // Warm-up: the kernels and the JavaScript tier up on a first request per worker.
          await Promise.all([stream(s.url, 1), stream(s.url, 2)]);
          for (const clients of STREAMS)
            out.streams.push({ format, streams: clients, ...(await cell(s, clients)) });
        } finally {
          await s.stop();
        }
      }
      out.ready.push({
        format,
        readyMs: median(readies),
        rssMiB: median(rss),
        rssTargetMiB: weights[format] * 1.15 + 150,
      });
      const one = out.streams.find((r) => r.format === format && r.streams === 1);
      const eight = out.streams.find((r) => r.format === format && r.streams === 8);
      if (one && eight) out.ratios[format] = eight.tokensPerS / one.tokensPerS;
    } catch (e) {
      skip(`server batching (${format}) on ${model.name}`, e);
    }
  }
  out.targets['8 streams ÷ 1 stream, f32'] = {
    value: out.ratios.f32,
    target: `≥ ${TARGET_RATIO}×`,
    pass: out.ratios.f32 >= TARGET_RATIO,
  };
  const f32Ready = out.ready.find((r) => r.format === 'f32');
  if (f32Ready) {
    out.targets['load to /ready, f32 (ms)'] = {
      value: f32Ready.readyMs,
      target: `≤ ${TARGET_READY_MS}`,
      pass: f32Ready.readyMs <= TARGET_READY_MS,
    };
  }
  // The memory line for each format, against its own weights (q8_0: the int8 blocks it holds).
  for (const r of out.ready) {
    out.targets[`resident memory, 2 workers, ${r.format} (MiB)`] = {
      value: r.rssMiB,
      target: `≤ ${r.rssTargetMiB.toFixed(0)} (weights × 1.15 + 150)`,
      pass: r.rssMiB <= r.rssTargetMiB,
    };
  }
  printResults(out);
  return out;
}

const fmt = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '');

function printResults(out: ServerBatchResults): void {
  printTable(
    `Server batching on ${out.model} (compiled server, ${WORKERS} workers, loopback; ${MAX_TOKENS} new tokens a request, top-k 50 / top-p 0.95)`,
    [
      'format',
      'streams',
      'requests',
      'tokens',
      'tok/s (all streams)',
      'TTFT p50 ms',
      'TTFT p99 ms',
      'peak RSS MiB',
    ],
    out.streams.map((r) => [
      r.format,
      String(r.streams),
      String(r.requests),
      String(r.tokens),
      fmt(r.tokensPerS),
      fmt(r.ttftP50Ms, 0),
      fmt(r.ttftP99Ms, 0),
      fmt(r.rssPeakMiB, 0),
    ]),
  );
  printTable(
    `Load to /ready (spawn → 200, warm page cache, median of ${READY_RUNS}) and resident memory idle with ${WORKERS} workers`,
    ['format', 'weights MiB', '/ready ms', 'RSS MiB', 'target MiB'],
    out.ready.map((r) => [
      r.format,
      fmt(out.weightsMiB[r.format], 0),
      fmt(r.readyMs, 0),
      fmt(r.rssMiB, 0),
      fmt(r.rssTargetMiB, 0),
    ]),
  );
  printTable(
    'Server batching targets',
    ['figure', 'value', 'target', 'pass'],
    Object.entries(out.targets).map(([k, t]) => [k, fmt(t.value, 2), t.target, t.pass ? 'yes' : 'NO']),
  );
}
