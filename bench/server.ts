// Server section of `npm run bench`: the compiled server as a child process, loopback load, cold start and RSS.
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../scripts/lib/free-port.js';
import { TOKENIZER_CACHE_FILE } from '../src/io/tokenizer-cache.js';
import { writeTokenizerCache } from '../src/io/tokenizer-files.js';
import { ChatStreamTimer } from './lib/chat-stream.js';
import { runLoad } from './lib/http-load.js';
import { type ImageRuntime, imageRuntime } from './lib/image-runtime.js';
import { locateModels, repoRoot } from './lib/models.js';
import { median, nowMs, quantile } from './lib/stats.js';
import { printTable } from './lib/table.js';

const CONCURRENCY = [1, 8, 32];
const WORKERS = [1, 2];
/** Seconds each (endpoint, concurrency, workers) cell runs per round. */
const CELL_S = 1;
/**
 * The 32-client cells, whose 2-worker ÷ 1-worker ratio is a target, run longer: with one-second cells two
 * quiet runs gave 1.55× and 1.84× for the same model.
 */
const SCALING_CELL_S = 3;
const cellSeconds = (clients: number) => (clients >= 32 ? SCALING_CELL_S : CELL_S);
const COLD_RUNS = 9;
/** Issue 6: spawn → /ready within this. */
const TARGET_READY_MS = 300;
/**
 * Cold starts as the container image runs (no NODE_EXTRA_CA_CERTS), with this machine's environment, and — when
 * `npm run bench:image-node` installed it — as the image runs with its own Node major (bench/lib/image-runtime.ts).
 */
type Environment = 'image' | 'host' | 'image-node';
const TARGET_P50_MS = 20;
const TARGET_SCALING = 1.7;
const GENERATE_BODY = JSON.stringify({ prompt: 'What is tiny-llm?', max_new_tokens: 50, seed: 42 });
const CHAT_BODY = JSON.stringify({
  messages: [{ role: 'user', content: 'What is tiny-llm?' }],
  stream: true,
  max_tokens: 50,
  seed: 42,
});

type Skip = (what: string, why: unknown) => void;

interface Cell {
  /** 2xx replies completed in the cell's time. */
  replies: number;
  requestsPerS: number;
  p50Ms: number;
  p99Ms: number;
  ttftP50Ms?: number;
  ttftP99Ms?: number;
  non200: number;
  /** CPU per 2xx reply (µs): the server's main thread, the whole server process, the load client. */
  cpuUs?: { main: number; server: number; client: number };
}

export interface ServerRow extends Omit<Cell, 'replies'> {
  model: string;
  endpoint: 'generate' | 'chat-stream';
  workers: number;
  concurrency: number;
}

export interface ServerResults {
  load: ServerRow[];
  memory: { model: string; workers: number; rssMaxMiB: number; rssMedianMiB: number }[];
  coldStart: {
    model: string;
    workers: number;
    /**
     * 'image': without NODE_EXTRA_CA_CERTS, as the container runs; 'host': this machine's environment;
     * 'image-node': as 'image', run by the image's Node major on a copy of the build with its code cache.
     */
    environment: Environment;
    /** The Node that ran it (process.version). */
    node: string;
    readyMs: number;
    firstReplyMs: number;
    rssMiB: number;
    /** False for a directory served as another tool wrote it (shown, but not a target). */
    target: boolean;
  }[];
  targets: Record<string, { value: number; target: string; pass: boolean }>;
}

interface Served {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/** VmRSS of a process in MiB (all threads: the generation workers included), NaN when unreadable. */
function rssMiB(pid: number): number {
  try {
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kib ? Number(kib) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds (user + system) of a process, or of one of its threads, from /proc; NaN when unreadable. */
function cpuSeconds(pid: number, tid?: number): number {
  try {
    const stat = readFileSync(
      tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`,
      'utf8',
    );
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/**
 * Runs one load cell and adds the CPU each 2xx reply cost: the server's main thread (HTTP, routing, posting
 * to workers), the whole server, and this process (the load client). CPU per request varies less than
 * req/s on a shared 2-core machine, and shows what the main thread and the client take from the workers.
 */
async function withCpu(pid: number, load: () => Promise<Cell>): Promise<Cell> {
  const main0 = cpuSeconds(pid, pid);
  const server0 = cpuSeconds(pid);
  const client0 = process.cpuUsage();
  const cell = await load();
  const client = process.cpuUsage(client0);
  const replies = cell.replies;
  if (replies > 0)
    cell.cpuUs = {
      main: ((cpuSeconds(pid, pid) - main0) / replies) * 1e6,
      server: ((cpuSeconds(pid) - server0) / replies) * 1e6,
      client: (client.user + client.system) / replies,
    };
  return cell;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Servers still running: killed if the bench exits early, so no child outlives it. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Spawns `tiny-llm serve` (dist/) with the queue and rate limits out of the way; resolves once every worker is up. */
async function serve(modelDir: string, workers: number): Promise<Served> {
  const port = await freePort();
  const args = [join(repoRoot, 'bin', 'tiny-llm.js'), 'serve', '--model-dir', modelDir];
  args.push('--port', String(port), '--host', '127.0.0.1', '--workers', String(workers));
  args.push('--queue-limit', '10000', '--rate-limit', '0');
  // The memory setting the image runs with (docker/Dockerfile, and `npm start`): two malloc arenas.
  const child = spawn(process.execPath, args, {
    env: { ...process.env, PORT: '', WORKERS: '', RATE_LIMIT: '', LOG_LEVEL: 'warn', MALLOC_ARENA_MAX: '2' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  live.add(child);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      live.delete(child);
      resolve();
    }),
  );
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(kill);
  };
  const url = `http://127.0.0.1:${port}`;
  const start = nowMs();
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`the server exited before it was ready: ${stderr.trim().slice(-500)}`);
      if (nowMs() - start > 60_000)
        throw new Error(`the server was not ready within 60 s: ${stderr.slice(-500)}`);
      // Ready once one worker can generate; the load is measured on the whole pool.
      const res = await fetch(`${url}/ready`).catch(() => null);
      const body =
        res?.status === 200 ? ((await res.json()) as { workers?: { ready: number; total: number } }) : null;
      if (!body) await res?.body?.cancel();
      if (body && (!body.workers || body.workers.ready >= body.workers.total)) return { child, url, stop };
      await sleep(20);
    }
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * `POST /generate` by keep-alive connections each sending the next request when the reply has ended
 * (bench/lib/http-load.ts): whole-reply latency, which is what /generate has. The client shares the two
 * cores with the server, so it is a lean one, cheaper per request than autocannon.
 */
async function loadGenerate(url: string, connections: number): Promise<Cell> {
  const r = await runLoad({
    url,
    method: 'POST',
    path: '/generate',
    headers: { 'content-type': 'application/json' },
    body: GENERATE_BODY,
    connections,
    durationMs: cellSeconds(connections) * 1000,
    timeoutMs: 30_000,
  });
  const q = (p: number) => (r.latenciesMs.length ? quantile(r.latenciesMs, p) : Number.NaN);
  return {
    replies: r.ok,
    requestsPerS: r.ok / r.elapsedS,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    non200: r.non2xx + r.errors,
  };
}

/**
 * Streamed chat with our own node:http client: autocannon only sees whole responses, and the time to the
 * first content delta needs the SSE events as they arrive. `clients` loops send until the cell's time is up.
 */
async function loadChat(url: string, clients: number): Promise<Cell> {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const latencies: number[] = [];
  const ttfts: number[] = [];
  let non200 = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = nowMs();
      const timer = new ChatStreamTimer();
      const req = request(
        `${url}/v1/chat/completions`,
        { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
        (res) => {
          res.setEncoding('utf8');
          res.on('data', (text: string) => {
            try {
              timer.push(text, nowMs());
            } catch {
              res.destroy();
            }
          });
          res.on('end', () => {
            if (res.statusCode !== 200 || !timer.done || timer.firstContentAt === null) non200++;
            else {
              latencies.push(nowMs() - t0);
              ttfts.push(timer.firstContentAt - t0);
            }
            resolve();
          });
          res.on('error', () => {
            non200++;
            resolve();
          });
        },
      );
      req.setTimeout(30_000, () => req.destroy(new Error('timed out')));
      req.on('error', () => {
        non200++;
        resolve();
      });
      req.end(CHAT_BODY);
    });
  const start = nowMs();
  const deadline = start + cellSeconds(clients) * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (nowMs() < deadline) await one();
    }),
  );
  const elapsed = (nowMs() - start) / 1000;
  agent.destroy();
  const q = (xs: number[], p: number) => (xs.length ? quantile(xs, p) : Number.NaN);
  return {
    replies: latencies.length,
    requestsPerS: latencies.length / elapsed,
    p50Ms: q(latencies, 0.5),
    p99Ms: q(latencies, 0.99),
    ttftP50Ms: q(ttfts, 0.5),
    ttftP99Ms: q(ttfts, 0.99),
    non200,
  };
}

/** Runs `fn` while sampling the process's RSS every 50 ms. */
async function sampled<T>(pid: number, into: number[], fn: () => Promise<T>): Promise<T> {
  const timer = setInterval(() => {
    const v = rssMiB(pid);
    if (Number.isFinite(v)) into.push(v);
  }, 50);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

const medianOf = (xs: number[]) => {
  const finite = xs.filter(Number.isFinite);
  return finite.length ? median(finite) : Number.NaN;
};

async function benchModel(name: string, dir: string, rounds: number, out: ServerResults, skip: Skip) {
  const servers = new Map<number, Served>();
  try {
    for (const w of WORKERS) {
      try {
        servers.set(w, await serve(dir, w));
      } catch (e) {
        skip(`server on ${name} with ${w} workers`, e);
      }
    }
    if (servers.size === 0) return;
    const cells = new Map<string, Cell[]>();
    const rss = new Map<number, number[]>(WORKERS.map((w) => [w, []]));
    const key = (endpoint: string, w: number, c: number) => `${endpoint}|${w}|${c}`;
    // Round 0 warms up; later rounds alternate which worker count goes first so noise hits both alike.
    for (let round = 0; round <= rounds; round++) {
      process.stdout.write(`  server ${name}: round ${round}/${rounds}${round === 0 ? ' (warm-up)' : ''}\n`);
      const order = round % 2 ? [...WORKERS].reverse() : WORKERS;
      for (const w of order) {
        const s = servers.get(w);
        if (!s?.child.pid) continue;
        for (const c of CONCURRENCY) {
          const samples = rss.get(w) ?? [];
          const pid = s.child.pid;
          const gen = await sampled(pid, samples, () => withCpu(pid, () => loadGenerate(s.url, c)));
          const chat = await sampled(pid, samples, () => withCpu(pid, () => loadChat(s.url, c)));
          if (round === 0) {
            samples.length = 0;
            continue;
          }
          for (const [endpoint, cell] of [
            ['generate', gen],
            ['chat-stream', chat],
          ] as const) {
            const k = key(endpoint, w, c);
            cells.set(k, [...(cells.get(k) ?? []), cell]);
          }
        }
      }
    }
    for (const endpoint of ['generate', 'chat-stream'] as const)
      for (const w of WORKERS)
        for (const c of CONCURRENCY) {
          const cs = cells.get(key(endpoint, w, c));
          if (!cs) continue;
          const row: ServerRow = {
            model: name,
            endpoint,
            workers: w,
            concurrency: c,
            requestsPerS: medianOf(cs.map((x) => x.requestsPerS)),
            p50Ms: medianOf(cs.map((x) => x.p50Ms)),
            p99Ms: medianOf(cs.map((x) => x.p99Ms)),
            non200: cs.reduce((a, x) => a + x.non200, 0),
          };
          const cpu = cs.flatMap((x) => (x.cpuUs ? [x.cpuUs] : []));
          if (cpu.length)
            row.cpuUs = {
              main: medianOf(cpu.map((x) => x.main)),
              server: medianOf(cpu.map((x) => x.server)),
              client: medianOf(cpu.map((x) => x.client)),
            };
          if (endpoint === 'chat-stream') {
            row.ttftP50Ms = medianOf(cs.map((x) => x.ttftP50Ms ?? Number.NaN));
            row.ttftP99Ms = medianOf(cs.map((x) => x.ttftP99Ms ?? Number.NaN));
          }
          out.load.push(row);
        }
    for (const [w, xs] of rss)
      if (xs.length)
        out.memory.push({ model: name, workers: w, rssMaxMiB: Math.max(...xs), rssMedianMiB: median(xs) });
  } finally {
    for (const s of servers.values()) await s.stop();
  }
}

/**
 * The directory to serve a model from: `dir` when it holds tokenizer-tables.bin (every directory `create-model`
 * writes does), else a temporary copy with the tables written as `create-model` writes them (the golden
 * seed-tiny directory was written by transformers: without them a start scans tokenizer.json).
 */
async function servedDir(dir: string): Promise<{ dir: string; copied: boolean; remove(): void }> {
  if (existsSync(join(dir, TOKENIZER_CACHE_FILE))) return { dir, copied: false, remove() {} };
  const copy = mkdtempSync(join(tmpdir(), 'bench-served-'));
  const remove = () => rmSync(copy, { recursive: true, force: true });
  try {
    for (const name of readdirSync(dir)) {
      // The model's own files; the golden directory's reference outputs are not part of a model.
      if (!/^(reference|.*\.onnx$)/.test(name)) copyFileSync(join(dir, name), join(copy, name));
    }
    if (!(await writeTokenizerCache(copy))) throw new Error(`${dir} has no tokenizer files`);
  } catch (e) {
    remove();
    throw e;
  }
  return { dir: copy, copied: true, remove };
}

/** Cold start by scripts/measure-cold-start.ts (spawn → /ready → first /generate), worker counts interleaved. */
async function coldStart(
  name: string,
  dir: string,
  out: ServerResults,
  skip: Skip,
  runtime: ImageRuntime | null,
  target = true,
) {
  let measure: typeof import('../scripts/measure-cold-start.js').measureColdStart;
  try {
    ({ measureColdStart: measure } = await import('../scripts/measure-cold-start.js'));
  } catch (e) {
    skip('server cold start', e);
    return;
  }
  // Every worker count in every environment, interleaved spawn by spawn (a busy moment hits all alike).
  const environments: Environment[] = runtime ? ['image', 'host', 'image-node'] : ['image', 'host'];
  const cells = WORKERS.flatMap((w) => environments.map((environment) => ({ w, environment })));
  const runs = cells.map(() => ({ ready: [] as number[], first: [] as number[], rss: [] as number[] }));
  try {
    for (let i = 0; i < COLD_RUNS; i++)
      for (const c of i % 2 ? [...cells.keys()].reverse() : cells.keys()) {
        const { w, environment } = cells[c];
        const onImageNode = environment === 'image-node' && runtime;
        const r = await measure({
          modelDir: dir,
          workers: w,
          runs: 1,
          timeoutMs: 30_000,
          environment: environment === 'host' ? 'host' : 'image',
          ...(onImageNode ? { node: runtime.node, bin: runtime.bin } : {}),
        });
        runs[c].ready.push(...r.readyMs);
        runs[c].first.push(...r.firstReplyMs);
        runs[c].rss.push(...r.rssMiB);
      }
  } catch (e) {
    skip(`server cold start on ${name}`, e);
    return;
  }
  for (const [c, r] of runs.entries())
    out.coldStart.push({
      model: name,
      workers: cells[c].w,
      environment: cells[c].environment,
      node: cells[c].environment === 'image-node' && runtime ? runtime.version : process.version,
      readyMs: median(r.ready),
      firstReplyMs: median(r.first),
      rssMiB: medianOf(r.rss),
      target,
    });
}

const fmt = (x: number | undefined, digits = 1) =>
  x === undefined || !Number.isFinite(x) ? '' : x.toFixed(digits);

export async function benchServer(rounds: number, skip: Skip): Promise<ServerResults | undefined> {
  if (!existsSync(join(repoRoot, 'dist', 'cli', 'cli.cjs'))) {
    skip('server', 'dist/ is missing: run `npm run build` first (the section measures the compiled server)');
    return undefined;
  }
  const out: ServerResults = { load: [], memory: [], coldStart: [], targets: {} };
  const models = locateModels();
  let runtime: ImageRuntime | null = null;
  try {
    const got = imageRuntime(repoRoot);
    if (typeof got === 'string') skip("server cold start on the image's Node", got);
    else runtime = got;
  } catch (e) {
    skip("server cold start on the image's Node", e);
  }
  try {
    await benchModels(models, rounds, out, skip, runtime);
  } finally {
    runtime?.remove();
  }
  printTables(out, rounds);
  return out;
}

async function benchModels(
  models: ReturnType<typeof locateModels>,
  rounds: number,
  out: ServerResults,
  skip: Skip,
  runtime: ImageRuntime | null,
) {
  for (const located of models) {
    if (!located.ok) {
      skip(`server on ${located.name}`, located.why);
      continue;
    }
    const served = await servedDir(located.dir);
    try {
      if (served.copied)
        console.log(
          `server: ${located.name} is served from a copy of ${located.dir} with the ${TOKENIZER_CACHE_FILE} that \`create-model\` writes into every model directory (the directory as given, written by transformers, has none: its cold start is measured too)`,
        );
      try {
        await benchModel(located.name, served.dir, rounds, out, skip);
      } catch (e) {
        skip(`server load on ${located.name}`, e);
      }
      await coldStart(located.name, served.dir, out, skip, runtime);
      if (served.copied)
        await coldStart(
          `${located.name}, as given (no ${TOKENIZER_CACHE_FILE})`,
          located.dir,
          out,
          skip,
          runtime,
          false,
        );
    } finally {
      served.remove();
    }
  }
}

const environmentLabel = (c: ServerResults['coldStart'][number]) =>
  c.environment === 'host'
    ? `this machine, Node ${c.node}`
    : `image${c.environment === 'image-node' ? "'s Node" : ', Node'} ${c.node} (no extra CAs)`;

function printTables(out: ServerResults, rounds: number): void {
  printTable(
    `Server (compiled, loopback, ${CELL_S} s per cell (${SCALING_CELL_S} s at 32 clients), medians of ${rounds} rounds; 50 new tokens)`,
    [
      'model',
      'endpoint',
      'workers',
      'clients',
      'req/s',
      'p50 ms',
      'p99 ms',
      'TTFT p50',
      'TTFT p99',
      'non-200',
      'CPU µs/req: main',
      'server',
      'client',
    ],
    out.load.map((r) => [
      r.model,
      r.endpoint,
      String(r.workers),
      String(r.concurrency),
      fmt(r.requestsPerS),
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(r.ttftP50Ms),
      fmt(r.ttftP99Ms),
      String(r.non200),
      fmt(r.cpuUs?.main, 0),
      fmt(r.cpuUs?.server, 0),
      fmt(r.cpuUs?.client, 0),
    ]),
  );
  printTable(
    `Server cold start (median of ${COLD_RUNS} spawns) and resident memory (VmRSS sampled under load)`,
    [
      'model',
      'workers',
      'environment',
      'ready ms',
      'first reply ms',
      'RSS after start MiB',
      'RSS load median',
      'RSS load max',
    ],
    out.coldStart.map((c) => {
      // Load ran on this machine's Node only: the image's Node rows have no figures under load.
      const m =
        c.environment === 'image-node'
          ? undefined
          : out.memory.find((x) => x.model === c.model && x.workers === c.workers);
      return [
        c.model,
        String(c.workers),
        environmentLabel(c),
        fmt(c.readyMs, 0),
        fmt(c.firstReplyMs, 0),
        fmt(c.rssMiB),
        fmt(m?.rssMedianMiB),
        fmt(m?.rssMaxMiB),
      ];
    }),
  );
  for (const model of new Set(out.load.map((r) => r.model))) {
    const find = (endpoint: string, w: number, c: number) =>
      out.load.find(
        (r) => r.model === model && r.endpoint === endpoint && r.workers === w && r.concurrency === c,
      );
    const p50 = find('generate', 1, 1)?.p50Ms;
    if (p50 !== undefined)
      out.targets[`${model}: /generate p50 at 1 client, 1 worker (ms)`] = {
        value: p50,
        target: `≤ ${TARGET_P50_MS}`,
        pass: p50 <= TARGET_P50_MS,
      };
    for (const endpoint of ['generate', 'chat-stream']) {
      const one = find(endpoint, 1, 32)?.requestsPerS;
      const two = find(endpoint, 2, 32)?.requestsPerS;
      if (one && two !== undefined)
        out.targets[`${model}: ${endpoint} req/s at 32 clients, 2 workers ÷ 1 worker`] = {
          value: two / one,
          target: `≥ ${TARGET_SCALING}×`,
          pass: two / one >= TARGET_SCALING,
        };
    }
  }
  for (const c of out.coldStart.filter((x) => x.target && x.workers === Math.max(...WORKERS)))
    out.targets[`${c.model}: spawn → /ready, ${c.workers} workers, ${environmentLabel(c)} (ms)`] = {
      value: c.readyMs,
      target: `≤ ${TARGET_READY_MS}`,
      pass: c.readyMs <= TARGET_READY_MS,
    };
  printTable(
    'Server targets (issue 6)',
    ['figure', 'measured', 'target', ''],
    Object.entries(out.targets).map(([k, t]) => [k, fmt(t.value, 2), t.target, t.pass ? 'pass' : 'miss']),
  );
}
