// Hostile clients against the built server (`bin/tiny-llm.js serve`) over raw sockets — generated requests, partial requests and bodies cut mid-way, pipelining, huge headers, streams nobody reads — with the server checked after each batch (/health within 100 ms, the queue empty, resident memory within a stated bound, a normal request answered); then SIGTERM at a seeded random moment of such traffic, which must always end in exit 0 within the 8 s drain.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { residentBytes } from '../../scripts/load/serve-process.js';
import { Rng } from '../../src/engine/rng.js';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import {
  closedWithin,
  exchange,
  jsonPost,
  openSocket,
  parseAnswers,
  type RawAnswer,
} from '../helpers/raw-http.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';
import { metricValue, scrape } from '../server/harness.js';

const MiB = 1024 * 1024;
/**
 * How much the server's resident memory (main thread and workers) may grow over its warmed-up size across all
 * batches: the 64 MiB the server lets unread answers hold in all, and 32 MiB for the heap's own churn. A server
 * that kept what its clients never read, or a connection's state, per request would pass it within a batch.
 */
const RSS_GROWTH_BOUND = 96 * MiB;
/** /health must answer within this after every batch (best of three tries: this machine is shared). */
const HEALTH_MS = 100;
/** The drain the README promises: SIGTERM to exit. */
const DRAIN_MS = 8000;
/** A connection whose client takes nothing for this long is closed (SEND_STALL_MS in the connections plugin). */
const SEND_STALL_MS = 15_000;
const RUNS = Number(process.env.HOSTILE_RUNS ?? 150);
const SEEDS = process.env.FUZZ_SEED ? [Number(process.env.FUZZ_SEED)] : [11, 23, 37];

let model: TinyModel;
before(async () => {
  model = await createTinyModel({ nPositions: 1024 });
});
after(() => model.remove());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Every answer carries the security headers; a non-2xx one is the error shape, exactly. */
function assertAnswer(answer: RawAnswer, context: string): void {
  assert.match(answer.headers['content-security-policy'] ?? '', /frame-ancestors 'none'/, context);
  assert.equal(answer.headers['x-content-type-options'], 'nosniff', context);
  assert.ok(answer.status < 500 || answer.status === 503, `a server error: ${context}`);
  if (answer.status < 300) return;
  const body = JSON.parse(answer.body);
  assert.deepEqual(Object.keys(body.error ?? {}).sort(), ['code', 'message', 'param', 'type'], context);
  if (answer.status === 503) assert.equal(body.error.code, 'queue_full', context);
}

const chat = (extra: object = {}) =>
  JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, ...extra });

/**
 * A stream of many bytes per token (8 choices, 20 alternatives each, about 6 MB in all): more than the kernel's
 * buffers of one loopback connection take, so the server holds the rest while its client does not read.
 */
const HEAVY_STREAM = chat({ stream: true, n: 8, max_tokens: 450, logprobs: true, top_logprobs: 20 });
/** A lighter one for the warm-up. */
const MEDIUM_STREAM = chat({ stream: true, n: 2, max_tokens: 300, logprobs: true, top_logprobs: 20 });

describe('hostile clients, batch by batch (built server)', () => {
  let server: BuiltServer;
  let rssStart = 0;
  let peakGrowth = 0;
  /** Half a request line and then nothing, opened first and checked last: Node's 10 s headers timeout answers it. */
  let slow: { socket: Socket; openedAt: number; raw: string; answeredAt: number };

  before(async () => {
    server = await startBuiltServer({ workers: 2, modelDir: model.dir });
    // Warm up, a heavy stream included, so the baseline holds what serving costs (the heap grown to its working
    // size), not what a first request loads.
    for (const body of [chat(), chat({ stream: true }), MEDIUM_STREAM])
      await exchange(server.port, jsonPost('/v1/chat/completions', body), 60_000, 1);
    rssStart = residentBytes(server.pid)!.rss;
    const half = await openSocket(server.port);
    half.on('error', () => {});
    slow = { socket: half, openedAt: performance.now(), raw: '', answeredAt: 0 };
    half.on('data', (d: Buffer) => {
      slow.raw += d.toString('latin1');
      slow.answeredAt ||= performance.now();
    });
    half.write('GET /health HT');
  });
  after(() => server.close());

  /** The checks after a batch: queue empty, /health fast, memory bounded, a normal request answered. */
  async function afterBatch(batch: string): Promise<void> {
    await waitFor(
      'the queue to empty',
      async () => {
        const m = await scrape(server.url);
        return metricValue(m, 'tiny_llm_queue_depth') === 0;
      },
      10_000,
    );
    let health = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3 && health >= HEALTH_MS; i++) {
      const started = performance.now();
      const res = await fetch(`${server.url}/health`);
      await res.arrayBuffer();
      assert.equal(res.status, 200);
      health = Math.min(health, performance.now() - started);
    }
    const rss = residentBytes(server.pid)!.rss;
    peakGrowth = Math.max(peakGrowth, rss - rssStart);
    const normal = await exchange(
      server.port,
      jsonPost('/generate', JSON.stringify({ prompt: 'ok?', max_new_tokens: 3 })),
      10_000,
      1,
    );
    console.log(
      `after ${batch}: /health ${health.toFixed(1)} ms, RSS ${(rss / MiB).toFixed(0)} MiB (${((rss - rssStart) / MiB).toFixed(1)} MiB over the start), a normal request: ${normal.answers[0]?.status}`,
    );
    assert.ok(health < HEALTH_MS, `${batch}: /health took ${health.toFixed(1)} ms`);
    assert.ok(
      rss - rssStart < RSS_GROWTH_BOUND,
      `${batch}: RSS grew by ${((rss - rssStart) / MiB).toFixed(0)} MiB`,
    );
    assert.equal(normal.answers[0]?.status, 200, normal.raw.slice(0, 300));
    assert.doesNotMatch(server.output(), /"severity":"(ERROR|CRITICAL)"/, `${batch}: an error was logged`);
  }

  it('partial requests and bodies cut mid-way: every connection ends, nothing is left running', async () => {
    const cases: string[] = [
      'GET /health HT',
      'POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: appl',
      'POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"prompt":',
      jsonPost('/v1/chat/completions', chat({ stream: true, max_tokens: 200 })).slice(0, -10),
      'POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"pro',
    ];
    const rounds = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const socket = await openSocket(server.port);
        socket.on('error', () => {});
        // Reads what comes (a close is seen only once the answer before it was read).
        socket.resume();
        socket.write(cases[i % cases.length]);
        await sleep(i % 7 === 0 ? 0 : (i * 13) % 120);
        // Half of them hang up; the others close their side, which the server must read as a cut request.
        if (i % 2 === 0) socket.destroy();
        else socket.end();
        return closedWithin(socket, 5000);
      }),
    );
    assert.ok(rounds.every(Boolean), 'a connection stayed open after its client ended it');
    await afterBatch('40 partial requests');
  });

  it('pipelining: each whole request is answered in order on its connection, up to a broken one', async () => {
    const requests = [
      'GET /health HTTP/1.1\r\nHost: t\r\n\r\n',
      jsonPost('/generate', JSON.stringify({ prompt: 'a', max_new_tokens: 2 })),
      jsonPost('/v1/chat/completions', chat({ stream: true })),
      'GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n',
      jsonPost('/tokenize', JSON.stringify({ content: 'hello world' })),
      jsonPost('/v1/completions', '{"prompt": 5}'),
    ];
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const n = 2 + (i % 5);
        const batch = Array.from({ length: n }, (_, j) => requests[(i + j) % requests.length]).join('');
        return exchange(
          server.port,
          `${batch}GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`,
          10_000,
        ).then((r) => ({ n: n + 1, r }));
      }),
    );
    for (const { n, r } of results) {
      assert.equal(
        r.answers.length,
        n,
        `${n} pipelined requests, ${r.answers.length} answers: ${r.raw.slice(0, 300)}`,
      );
      for (const answer of r.answers) assertAnswer(answer, 'pipelined');
      assert.equal(JSON.parse(r.answers.at(-1)!.body).status, 'ok', 'the last one is /health');
    }
    await afterBatch('20 pipelined batches');
  });

  it('huge headers: 431 in the error shape, never a crash; just under the limit is served', async () => {
    const big = await Promise.all(
      [17_000, 64_000, 1_000_000].map((n) =>
        exchange(server.port, `GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(n)}\r\n\r\n`),
      ),
    );
    for (const r of big) {
      assert.equal(r.answers[0]?.status, 431, r.raw.slice(0, 200));
      assertAnswer(r.answers[0], '431');
    }
    const under = await exchange(
      server.port,
      `GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(15_000)}\r\n\r\n`,
      5000,
      1,
    );
    assert.equal(under.answers[0]?.status, 200);
    await afterBatch('huge headers');
  });

  it(`generated raw requests (${RUNS}): every answer is whole, has the security headers, and a non-2xx one the error shape`, async () => {
    const routes: Array<[string, string]> = [
      ['GET', '/health'],
      ['GET', '/ready'],
      ['GET', '/metrics'],
      ['GET', '/v1/models'],
      ['GET', '/v1/models/tiny-llm'],
      ['GET', '/api/model'],
      ['GET', '/static/app.js'],
      ['POST', '/generate'],
      ['POST', '/v1/chat/completions'],
      ['POST', '/v1/completions'],
      ['POST', '/tokenize'],
      ['POST', '/detokenize'],
    ];
    const bodies = fc.oneof(
      fc.constantFrom(
        chat(),
        chat({ stream: true }),
        '{"prompt":"x","max_new_tokens":2}',
        '{"content":"hi"}',
      ),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 200 }),
      fc.constant(''),
    );
    const path = fc.oneof(
      fc.constantFrom(...routes.map(([, p]) => p)),
      fc
        .tuple(fc.constantFrom(...routes.map(([, p]) => p)), fc.string({ maxLength: 30 }))
        .map(([p, s]) => `${p}/${encodeURIComponent(s)}`),
      fc.string({ maxLength: 12 }).map((s) => `/v1/models/${s.replace(/[\s]/g, '')}%${s.slice(0, 2)}`),
      fc.integer({ min: 90, max: 400 }).map((n) => `/v1/models/${'m'.repeat(n)}`),
      fc.string({ minLength: 1, maxLength: 40 }).map((s) => `/${s}`),
    );
    const header = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.constantFrom('Content-Type: application/json', 'Connection: keep-alive', 'Accept: */*'),
      },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          'Content-Type: text/plain',
          'Content-Length: abc',
          'Content-Length: -1',
          'Content-Length: 99999999999',
          'Transfer-Encoding: chunked',
          'Transfer-Encoding: gzip, chunked',
          'Expect: 100-continue',
          'Expect: nonsense',
          'X-Forwarded-For: 1.2.3.4, <script>',
          'Authorization: Bearer x',
          'Origin: https://evil.example',
        ),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(
            fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,19}$/),
            fc.string({ unit: 'binary-ascii', maxLength: 60 }),
          )
          .map(([n, v]) => `${n}: ${v.replace(/[\r\n]/g, '')}`),
      },
      {
        weight: 1,
        arbitrary: fc
          .tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ maxLength: 60 }))
          .map(([n, v]) => `${n}: ${v}`),
      },
    );
    const request = fc
      .record({
        route: fc.constantFrom(...routes),
        method: fc.option(
          fc.oneof(
            fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE'),
            fc.string({ minLength: 1, maxLength: 8 }),
          ),
          { freq: 3 },
        ),
        path: fc.option(path, { freq: 2 }),
        version: fc.oneof(
          { weight: 6, arbitrary: fc.constant('HTTP/1.1') },
          { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', '') },
        ),
        headers: fc.array(header, { maxLength: 4 }),
        body: bodies,
        lengthDelta: fc.constantFrom(0, 0, 0, 0, -3, 5),
      })
      .map((r) => ({ ...r, method: r.method ?? r.route[0], path: r.path ?? r.route[1] }));
    let answered = 0;
    const statuses = new Map<number, number>();
    const out = await fc.check(
      fc.asyncProperty(request, async (r) => {
        const body = Buffer.from(r.body, 'utf8');
        const chunked = r.headers.some((h) => /^transfer-encoding:/i.test(h));
        const length = r.headers.some((h) => /^content-length:/i.test(h))
          ? ''
          : `Content-Length: ${Math.max(0, body.length + r.lengthDelta)}\r\n`;
        const head = `${r.method} ${r.path} ${r.version}\r\nHost: t\r\n${r.headers.join('\r\n')}${r.headers.length ? '\r\n' : ''}${chunked ? '' : length}\r\n`;
        const payload = chunked
          ? Buffer.concat([
              Buffer.from(`${body.length.toString(16)}\r\n`),
              body,
              Buffer.from('\r\n0\r\n\r\n'),
            ])
          : body;
        const socket = await openSocket(server.port);
        let raw = '';
        socket.on('data', (d: Buffer) => {
          raw += d.toString('latin1');
        });
        socket.on('error', () => {});
        socket.end(Buffer.concat([Buffer.from(head, 'utf8'), payload]));
        const closed = await closedWithin(socket, 10_000);
        socket.destroy();
        const context = `${head.slice(0, 200)}… → ${raw.slice(0, 300)}`;
        assert.ok(closed, `the connection stayed open after the client ended it: ${context}`);
        // HEAD-like answers aside, every answer read must be whole and well formed.
        const answers = parseAnswers(raw);
        // No final answer is allowed (the client half-closed: the server takes it as gone, logs 499), after an
        // interim 100 Continue too; anything else must parse.
        const final = raw.replace(/^(?:HTTP\/1\.[01] 1\d\d[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n)+/, '');
        assert.ok(final === '' || answers.length > 0, `an answer that is not HTTP: ${context}`);
        for (const a of answers) {
          statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
          assertAnswer(a, context);
        }
        if (answers.length > 0) answered++;
      }),
      { numRuns: RUNS, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined },
    );
    if (out.failed) {
      const cause =
        out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
      assert.fail(`seed ${out.seed}, path ${out.counterexamplePath}: ${cause}`);
    }
    console.log(
      `${RUNS} generated raw requests: ${answered} answered; by status ${[...statuses]
        .sort(([a], [b]) => a - b)
        .map(([s, n]) => `${s}: ${n}`)
        .join(', ')}`,
    );
    await afterBatch(`${RUNS} generated raw requests`);
  });

  it('a heavy stream whose client never reads: the server holds what the kernel did not take, and closes the connection once its client took nothing for 15 s', async () => {
    const socket = await openSocket(server.port);
    socket.on('error', () => {});
    socket.pause();
    socket.write(jsonPost('/v1/chat/completions', HEAVY_STREAM));
    const unread = { socket, openedAt: performance.now() };
    const line = () =>
      server
        .output()
        .split('\n')
        .find((l) => l.includes('the client stopped reading'));
    await waitFor(
      'the stalled stream to be closed',
      async () => line() !== undefined,
      50_000 - (performance.now() - unread.openedAt),
    ).catch(() => {});
    const after = performance.now() - unread.openedAt;
    // Reading now takes what the kernel held; a connection the server closed then ends.
    unread.socket.on('data', () => {});
    unread.socket.resume();
    const closed = await closedWithin(unread.socket, 10_000);
    const logged = line();
    console.log(
      `unread heavy stream: closed ${after.toFixed(0)} ms after it was sent (ended: ${closed}); ${logged?.slice(0, 400)}`,
    );
    assert.ok(logged, 'the server still holds a connection whose client reads nothing');
    assert.ok(closed, 'the connection did not end');
    assert.ok(after >= SEND_STALL_MS, `closed after ${after.toFixed(0)} ms, before the stall timeout`);
    assert.equal(JSON.parse(logged).severity, 'INFO');
    await afterBatch('the unread stream');
    console.log(
      `largest RSS growth over the batches: ${(peakGrowth / MiB).toFixed(1)} MiB (bound ${RSS_GROWTH_BOUND / MiB} MiB)`,
    );
  });

  it('half a request line and then nothing: 408 in the error shape once the 10 s headers timeout passed, and the connection closed', async () => {
    await waitFor(
      'the 408',
      async () => parseAnswers(slow.raw).length > 0,
      25_000 - (performance.now() - slow.openedAt),
    ).catch(() => {});
    const answers = parseAnswers(slow.raw);
    const waited = () => slow.answeredAt - slow.openedAt;
    console.log(
      `half a request line: answered ${waited().toFixed(0)} ms after it was sent: ${slow.raw.split('\r\n')[0]}`,
    );
    assert.equal(answers.length, 1, `no answer: ${JSON.stringify(slow.raw.slice(0, 200))}`);
    assert.equal(answers[0].status, 408);
    assertAnswer(answers[0], '408');
    assert.equal(JSON.parse(answers[0].body).error.code, 'request_timeout');
    assert.ok(waited() >= 9_000, `answered after ${waited().toFixed(0)} ms, before the headers timeout`);
    assert.ok(await closedWithin(slow.socket, 2000));
  });
});

/** One seeded client: picks an action, does it, repeats until `stop()` says so; errors of a closing server are expected. */
async function client(
  port: number,
  rng: Rng,
  stop: () => boolean,
  counts: Map<string, number>,
): Promise<void> {
  const actions: Array<[string, () => Promise<unknown>]> = [
    [
      'stream',
      () =>
        exchange(
          port,
          jsonPost('/v1/chat/completions', chat({ stream: true, max_tokens: 5 + rng.int(150) })),
          8000,
          1,
        ),
    ],
    [
      'whole',
      () =>
        exchange(
          port,
          jsonPost('/generate', JSON.stringify({ prompt: 'x', max_new_tokens: 5 + rng.int(150) })),
          8000,
          1,
        ),
    ],
    ['half headers', () => exchange(port, 'POST /generate HTTP/1.1\r\nHost: t\r\n', 300 + rng.int(2000))],
    ['half body', () => exchange(port, jsonPost('/generate', '{"prompt":', '', '50'), rng.int(300))],
    [
      'pipelined',
      () =>
        exchange(
          port,
          `GET /health HTTP/1.1\r\nHost: t\r\n\r\n${jsonPost('/generate', '{"prompt":"p","max_new_tokens":3}')}GET /ready HTTP/1.1\r\nHost: t\r\n\r\n`,
          3000,
          3,
        ),
    ],
    [
      'huge headers',
      () => exchange(port, `GET / HTTP/1.1\r\nHost: t\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`, 2000),
    ],
    [
      'unread stream',
      async () => {
        const socket = await openSocket(port);
        socket.on('error', () => {});
        socket.pause();
        socket.write(
          jsonPost(
            '/v1/chat/completions',
            chat({ stream: true, max_tokens: 300, logprobs: true, top_logprobs: 20 }),
          ),
        );
        await closedWithin(socket, 3000);
        socket.destroy();
      },
    ],
    ['idle keep-alive', () => exchange(port, 'GET /health HTTP/1.1\r\nHost: t\r\n\r\n', 500 + rng.int(2000))],
    ['silent', () => exchange(port, '', 500 + rng.int(2000))],
  ];
  while (!stop()) {
    const [name, act] = actions[rng.int(actions.length)];
    counts.set(name, (counts.get(name) ?? 0) + 1);
    await act().catch(() => {});
    // Once the listener is gone, connections are refused at once: do not spin.
    await sleep(rng.int(30));
  }
}

describe('SIGTERM at a random moment of hostile traffic (built server)', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: the process exits 0 within ${DRAIN_MS} ms of the signal`, async () => {
      const rng = new Rng(seed);
      const server = await startBuiltServer({ workers: 2, modelDir: model.dir });
      let exited = false;
      const counts = new Map<string, number>();
      const clients = Array.from({ length: 8 }, () =>
        client(server.port, new Rng(rng.int(1e9)), () => exited, counts),
      );
      const at = 200 + rng.int(1500);
      await sleep(at);
      const signalled = performance.now();
      server.child.kill('SIGTERM');
      const kill = setTimeout(() => server.child.kill('SIGKILL'), 15_000);
      const exit = await server.exited;
      const ms = performance.now() - signalled;
      exited = true;
      clearTimeout(kill);
      await Promise.all(clients);
      await server.close();
      const closedLine = /closed after (\d+) ms/.exec(server.output())?.[1];
      console.log(
        `seed ${seed}: SIGTERM ${at} ms into the traffic (${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')}); exit ${exit.code ?? exit.signal} after ${ms.toFixed(0)} ms (server closed after ${closedLine} ms)`,
      );
      assert.equal(exit.code, 0, `ended by ${exit.signal ?? exit.code}\n${server.output().slice(-2000)}`);
      assert.ok(ms < DRAIN_MS, `exit ${ms.toFixed(0)} ms after SIGTERM`);
      assert.doesNotMatch(server.output(), /"severity":"(ERROR|CRITICAL)"/, 'an error was logged');
    });
  }
});
