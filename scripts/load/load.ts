// Load run: N clients for D seconds against a real `tiny-llm serve` on loopback, mixing /generate and chat
// (streamed and whole), while /health latency and the server's resident memory are sampled throughout.
import { Agent, request as httpRequest } from 'node:http';
import { residentBytes, type ServeProcess, startServeProcess, waitReady } from './serve-process.js';

export interface LoadOptions {
  modelDir: string;
  clients: number;
  durationS: number;
  /** Server generation workers (default: the server's own, one per core). */
  workers?: number;
  queueLimit?: number;
  /** Per-client requests per minute on the server; absent keeps its default (120), 0 turns it off. */
  rateLimit?: number;
  /** Stop sending after this many requests in total. */
  maxRequests?: number;
  /** Tokens each request asks for. */
  maxTokens?: number;
  healthIntervalMs?: number;
  /** A request slower than this counts as an unexpected error. */
  requestTimeoutMs?: number;
  compiled?: boolean;
  log?: (line: string) => void;
}

export type Route = 'generate' | 'chat' | 'chat-stream';
const ROUTES: Route[] = ['generate', 'chat', 'chat-stream'];

export interface Percentiles {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export interface LoadReport {
  clients: number;
  durationS: number;
  wallS: number;
  workers: number | null;
  /** The server's queue limit and per-client rate limit as configured for the run; null: its defaults. */
  queueLimit: number | null;
  rateLimit: number | null;
  sent: number;
  byStatus: Record<string, number>;
  byClass: Record<string, number>;
  unexpected: number;
  /** The first few unexpected errors, for the log. */
  unexpectedSamples: string[];
  latencyMs: Record<Route, Percentiles>;
  /** Time to the first SSE bytes of streamed chat. */
  firstByteMs: Percentiles;
  healthMs: Percentiles;
  /** /health probes that failed or answered other than 200. */
  healthFailures: number;
  rssStartMiB: number;
  rssMaxMiB: number;
  /** The kernel's high-water mark of resident memory (VmHWM) at the end. */
  rssPeakMiB: number;
  tokensPerS: number;
}

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { n: 0, p50: 0, p99: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] };
}

interface Outcome {
  status: number;
  ms: number;
  firstByteMs: number | null;
  /** Why the answer breaks the contract; null when it is as designed. */
  unexpected: string | null;
  retryAfterS: number;
  tokens: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function body(route: Route, client: number, n: number, maxTokens: number): string {
  const prompt = `Client ${client} asks question ${n}: what does the pipeline deploy?`;
  if (route === 'generate') return JSON.stringify({ prompt, max_new_tokens: maxTokens });
  return JSON.stringify({
    messages: [
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: 'Hi! Ask me about the pipeline.' },
      { role: 'user', content: prompt },
    ],
    max_tokens: maxTokens,
    ...(route === 'chat-stream' ? { stream: true, stream_options: { include_usage: true } } : {}),
  });
}

/** Checks a 200 body against the contract: the JSON shape, or SSE framing ending in [DONE] without an error. */
function checkOk(route: Route, text: string): { error: string | null; tokens: number } {
  try {
    if (route === 'generate') {
      const r = JSON.parse(text);
      return typeof r.response === 'string'
        ? { error: null, tokens: 0 }
        : { error: 'no response field', tokens: 0 };
    }
    if (route === 'chat') {
      const r = JSON.parse(text);
      if (typeof r.choices?.[0]?.message?.content !== 'string')
        return { error: 'no message content', tokens: 0 };
      return { error: null, tokens: r.usage?.completion_tokens ?? 0 };
    }
    if (!text.endsWith('data: [DONE]\n\n'))
      return { error: `stream did not end with [DONE]: ${text.slice(-120)}`, tokens: 0 };
    let tokens = 0;
    for (const block of text.slice(0, -2).split('\n\n')) {
      if (!block.startsWith('data: ')) return { error: `malformed event ${block.slice(0, 80)}`, tokens: 0 };
      if (block === 'data: [DONE]') continue;
      const e = JSON.parse(block.slice(6));
      if (e.error) return { error: `error event ${JSON.stringify(e.error)}`, tokens: 0 };
      if (e.usage) tokens = e.usage.completion_tokens;
    }
    return { error: null, tokens };
  } catch (err) {
    return { error: `unparsable body: ${(err as Error).message}`, tokens: 0 };
  }
}

/** A 429 or 503 is designed only in the error shape with Retry-After. */
function checkRefusal(status: number, text: string, retryAfter: string | undefined): string | null {
  if (!retryAfter || !(Number(retryAfter) >= 1)) return `${status} without Retry-After`;
  try {
    const e = JSON.parse(text).error;
    if (typeof e?.message !== 'string' || !('code' in e) || !('param' in e) || !('type' in e))
      return `${status} without the error shape`;
    return null;
  } catch {
    return `${status} with a non-JSON body`;
  }
}

function send(
  agent: Agent,
  port: number,
  route: Route,
  payload: string,
  clientIp: string,
  timeoutMs: number,
): Promise<Outcome> {
  const start = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Omit<Outcome, 'ms'>) => {
      if (settled) return;
      settled = true;
      resolve({ ...o, ms: performance.now() - start });
    };
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      agent,
      method: 'POST',
      path: route === 'generate' ? '/generate' : '/v1/chat/completions',
      // One trusted proxy hop: the server keys its rate limit on this address, as behind Cloud Run.
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(payload),
        'x-forwarded-for': clientIp,
      },
      timeout: timeoutMs,
    });
    req.on('timeout', () => {
      req.destroy(new Error(`no answer within ${timeoutMs} ms`));
    });
    req.on('error', (err) =>
      done({
        status: 0,
        firstByteMs: null,
        unexpected: `${route}: ${err.message}`,
        retryAfterS: 0,
        tokens: 0,
      }),
    );
    req.on('response', (res) => {
      let firstByteMs: number | null = null;
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => {
        if (firstByteMs === null) firstByteMs = performance.now() - start;
        chunks.push(d);
      });
      res.on('error', (err) =>
        done({
          status: res.statusCode ?? 0,
          firstByteMs,
          unexpected: `${route}: ${err.message}`,
          retryAfterS: 0,
          tokens: 0,
        }),
      );
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        const retryAfter = res.headers['retry-after'];
        if (status === 200) {
          const { error, tokens } = checkOk(route, text);
          done({ status, firstByteMs, unexpected: error && `${route}: ${error}`, retryAfterS: 0, tokens });
        } else if (status === 429 || status === 503) {
          const problem = checkRefusal(status, text, retryAfter as string | undefined);
          done({
            status,
            firstByteMs,
            unexpected: problem && `${route}: ${problem}`,
            retryAfterS: Number(retryAfter) || 1,
            tokens: 0,
          });
        } else {
          done({
            status,
            firstByteMs,
            unexpected: `${route}: status ${status} ${text.slice(0, 200)}`,
            retryAfterS: 0,
            tokens: 0,
          });
        }
      });
    });
    req.end(payload);
  });
}

/** One /health probe over its own kept-alive connection, timed to the end of the body. */
function probe(agent: Agent, port: number): Promise<{ ok: boolean; ms: number }> {
  const start = performance.now();
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, agent, path: '/health', timeout: 10_000 });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ ok: false, ms: performance.now() - start }));
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve({ ok: res.statusCode === 200, ms: performance.now() - start }));
    });
    req.end();
  });
}

const MiB = 1024 * 1024;

/** Starts the server, runs the clients and the samplers, stops the server and reports. */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const log = options.log ?? (() => {});
  const maxTokens = options.maxTokens ?? 32;
  const server: ServeProcess = await startServeProcess({
    modelDir: options.modelDir,
    workers: options.workers,
    queueLimit: options.queueLimit,
    rateLimit: options.rateLimit,
    compiled: options.compiled,
    // The clients stand behind one proxy hop, as behind Cloud Run's front end: each is its own address to the
    // rate limit only when that hop is trusted (by default nothing in X-Forwarded-For is).
    args: ['--trust-proxy-hops', '1'],
  });
  try {
    await waitReady(server.url);
    const workersLine = /(\d+) workers/.exec(server.output());
    const rssStart = residentBytes(server.pid)?.rss ?? 0;
    log(`server pid ${server.pid} ready at ${server.url}, RSS ${(rssStart / MiB).toFixed(1)} MiB`);

    const started = performance.now();
    const deadline = started + options.durationS * 1000;
    const maxRequests = options.maxRequests ?? Number.POSITIVE_INFINITY;
    const timeoutMs = options.requestTimeoutMs ?? 30_000;
    let sent = 0;
    const byStatus: Record<string, number> = {};
    const latency: Record<Route, number[]> = { generate: [], chat: [], 'chat-stream': [] };
    const firstBytes: number[] = [];
    const unexpectedSamples: string[] = [];
    let unexpected = 0;
    let tokens = 0;

    // Samplers: /health every interval on its own connection, and the server's RSS alongside.
    const health: number[] = [];
    let healthFailures = 0;
    let rssMax = rssStart;
    const probeAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    const interval = options.healthIntervalMs ?? 75;
    const sampler = (async () => {
      while (performance.now() < deadline) {
        const next = performance.now() + interval;
        const r = await probe(probeAgent, server.port);
        if (r.ok) health.push(r.ms);
        else healthFailures++;
        const mem = residentBytes(server.pid);
        if (mem) rssMax = Math.max(rssMax, mem.rss);
        await sleep(Math.max(0, next - performance.now()));
      }
    })();

    const clientAgent = new Agent({ keepAlive: true, maxSockets: options.clients });
    const client = async (index: number) => {
      const ip = `10.${(index >> 8) & 255}.${index & 255}.1`;
      for (let n = 0; performance.now() < deadline && sent < maxRequests; n++) {
        const route = ROUTES[(index + n) % ROUTES.length];
        sent++;
        const o = await send(
          clientAgent,
          server.port,
          route,
          body(route, index, n, maxTokens),
          ip,
          timeoutMs,
        );
        byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
        if (o.unexpected) {
          unexpected++;
          if (unexpectedSamples.length < 5) unexpectedSamples.push(o.unexpected);
        }
        if (o.status === 200) {
          latency[route].push(o.ms);
          tokens += o.tokens;
          if (route === 'chat-stream' && o.firstByteMs !== null) firstBytes.push(o.firstByteMs);
        } else if (o.status === 429 || o.status === 503) {
          // Back off as the server asks, without running past the end of the test.
          await sleep(Math.min(o.retryAfterS * 1000, Math.max(0, deadline - performance.now())));
        }
      }
    };
    await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
    const wallS = (performance.now() - started) / 1000;
    await sampler;
    clientAgent.destroy();
    probeAgent.destroy();
    const mem = residentBytes(server.pid);
    if (mem) rssMax = Math.max(rssMax, mem.rss);

    const byClass: Record<string, number> = {};
    for (const [status, count] of Object.entries(byStatus)) {
      const cls =
        status === '0' ? 'network' : status === '429' || status === '503' ? status : `${status[0]}xx`;
      byClass[cls] = (byClass[cls] ?? 0) + count;
    }
    return {
      clients: options.clients,
      durationS: options.durationS,
      wallS,
      workers: workersLine ? Number(workersLine[1]) : null,
      queueLimit: options.queueLimit ?? null,
      rateLimit: options.rateLimit ?? null,
      sent,
      byStatus,
      byClass,
      unexpected,
      unexpectedSamples,
      latencyMs: {
        generate: percentiles(latency.generate),
        chat: percentiles(latency.chat),
        'chat-stream': percentiles(latency['chat-stream']),
      },
      firstByteMs: percentiles(firstBytes),
      healthMs: percentiles(health),
      healthFailures,
      rssStartMiB: rssStart / MiB,
      rssMaxMiB: rssMax / MiB,
      rssPeakMiB: (mem?.peak ?? rssMax) / MiB,
      tokensPerS: tokens / wallS,
    };
  } finally {
    const exit = await server.stop();
    log(`server stopped: exit ${exit.code ?? exit.signal}`);
  }
}

const f1 = (x: number) => x.toFixed(1);

/** The figures as a short plain-text table. */
export function formatReport(r: LoadReport, healthTargetMs = 50): string {
  const row = (name: string, p: Percentiles) =>
    `  ${name.padEnd(22)} ${String(p.n).padStart(6)} ${f1(p.p50).padStart(8)} ${f1(p.p99).padStart(8)} ${f1(p.max).padStart(8)}`;
  const classes = Object.entries(r.byClass)
    .sort()
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    `load: ${r.clients} clients for ${r.durationS} s (${f1(r.wallS)} s wall) against tiny-llm serve on 127.0.0.1 with ` +
      `${r.workers ?? '?'} workers, queue limit ${r.queueLimit ?? 'default (64)'}, ` +
      `rate limit ${r.rateLimit === 0 ? 'off' : `${r.rateLimit ?? 'default (120)'}/min per client`}`,
    `requests sent: ${r.sent}; by class: ${classes}; unexpected errors: ${r.unexpected}`,
    ...r.unexpectedSamples.map((s) => `  unexpected: ${s}`),
    `latency in ms                 n      p50      p99      max`,
    row('POST /generate', r.latencyMs.generate),
    row('chat (whole)', r.latencyMs.chat),
    row('chat (streamed)', r.latencyMs['chat-stream']),
    row('  first SSE bytes', r.firstByteMs),
    row('GET /health', r.healthMs),
    `/health p99 ${f1(r.healthMs.p99)} ms (target < ${healthTargetMs} ms: ${r.healthMs.p99 < healthTargetMs ? 'met' : 'missed'}); failed probes: ${r.healthFailures}`,
    `server RSS: ${f1(r.rssStartMiB)} MiB at start, ${f1(r.rssMaxMiB)} MiB max sampled, ${f1(r.rssPeakMiB)} MiB peak (VmHWM); ${f1(r.tokensPerS)} chat tokens/s`,
  ].join('\n');
}
