// The cross-cutting plugins: per-client rate limit (429, trusted proxy hop), Cloud Logging lines, web files, model card data.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import perfHooks from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { buildApp } from '../../src/server/app.js';
import { createLogger, traceField } from '../../src/server/logging.js';
import { loadServedModel, type ServedModel } from '../../src/server/model.js';
import { EVENT_LOOP_SAMPLE_MS } from '../../src/server/plugins/metrics.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';
import type { Json } from './harness.js';

let tiny: TinyModel;
let model: ServedModel;
const losses = Array.from({ length: 500 }, (_, i) => 10 / (1 + i / 50));

before(async () => {
  tiny = await createTinyModel({
    extraFiles: {
      'training.json': JSON.stringify({
        final_loss: 0.5,
        losses,
        wall_time_s: 12.5,
        tokens_per_s: 3000,
        preset: 'default',
      }),
      'loss-curve.svg': '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0L1 1"/></svg>',
    },
  });
  model = await loadServedModel(tiny.dir);
});
after(() => tiny.remove());

async function app(options: Partial<Parameters<typeof buildApp>[0]> = {}) {
  const a = await buildApp({
    model,
    systemPrompt: 'sys',
    workers: 1,
    logger: false,
    processMetrics: false,
    ...options,
  });
  return a;
}

describe('rate limit', () => {
  it('answers 429 in the error shape with Retry-After per client IP; probes are exempt; spoofed hops do not help', async () => {
    // One trusted hop, as on Cloud Run (with none, every request here comes from the same address).
    const a = await app({ rateLimit: { max: 3, windowMs: 60_000 }, trustProxy: 1 });
    try {
      const from = (xff: string) => ({ 'x-forwarded-for': xff });
      for (let i = 0; i < 3; i++)
        assert.equal((await a.inject({ url: '/v1/models', headers: from('1.1.1.1') })).statusCode, 200);
      const limited = await a.inject({ url: '/v1/models', headers: from('1.1.1.1') });
      assert.equal(limited.statusCode, 429);
      assert.ok(Number(limited.headers['retry-after']) >= 1);
      const err = limited.json().error;
      assert.equal(err.type, 'rate_limit_error');
      assert.equal(err.code, 'rate_limit_exceeded');
      // Cloud Run's front end appends the real client; a client-written left part changes nothing.
      assert.equal(
        (await a.inject({ url: '/v1/models', headers: from('9.9.9.9, 1.1.1.1') })).statusCode,
        429,
      );
      assert.equal(
        (await a.inject({ url: '/v1/models', headers: from('2.2.2.2') })).statusCode,
        200,
        'other clients are unaffected',
      );
      for (const url of ['/health', '/ready', '/metrics']) {
        for (let i = 0; i < 5; i++)
          assert.notEqual((await a.inject({ url, headers: from('1.1.1.1') })).statusCode, 429, url);
      }
    } finally {
      await a.close();
    }
  });
});

describe('logging', () => {
  it('writes JSON lines with severity, message, httpRequest and the Cloud trace of the request', async () => {
    const lines: Json[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
        done();
      },
    });
    const logger = createLogger({ destination: sink });
    const a = await app({ logger, traceProject: 'my-project', rateLimit: false });
    try {
      await a.inject({
        url: '/v1/models',
        headers: {
          'x-cloud-trace-context': '105445aa7843bc8bf206b12000100000/1;o=1',
          'user-agent': 'probe/1',
        },
      });
      await a.inject({ url: '/nowhere' });
    } finally {
      await a.close();
    }
    const line = lines.find((l) => l.httpRequest?.requestUrl === '/v1/models');
    assert.ok(line, JSON.stringify(lines));
    assert.equal(line.severity, 'INFO');
    assert.equal(line.message, 'GET /v1/models 200');
    assert.equal(
      line['logging.googleapis.com/trace'],
      'projects/my-project/traces/105445aa7843bc8bf206b12000100000',
    );
    assert.equal(line.httpRequest.requestMethod, 'GET');
    assert.equal(line.httpRequest.status, 200);
    assert.equal(line.httpRequest.userAgent, 'probe/1');
    assert.equal(line.httpRequest.remoteIp, '127.0.0.1');
    assert.match(line.httpRequest.latency, /^\d+\.\d{6}s$/);
    assert.match(line.time, /^\d{4}-\d\d-\d\dT/);
    assert.equal(lines.find((l) => l.httpRequest?.requestUrl === '/nowhere')?.httpRequest.status, 404);
    assert.ok(
      lines.every((l) => typeof l.severity === 'string' && typeof l.message === 'string' && !('level' in l)),
    );
  });

  it('gives each request line the level of its outcome and writes none below the logger level', async () => {
    const requestLines = async (level: string) => {
      const lines: Json[] = [];
      const sink = new Writable({
        write(chunk, _enc, done) {
          for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
          done();
        },
      });
      const a = await app({
        logger: createLogger({ level, destination: sink }),
        rateLimit: { max: 1, windowMs: 60_000 },
      });
      try {
        for (const url of ['/nowhere', '/v1/models', '/v1/models', '/health'])
          await a.inject({ url, headers: { 'user-agent': 'probe/1' } });
      } finally {
        await a.close();
      }
      return lines.filter((l) => l.httpRequest).map((l) => `${l.severity} ${l.message}`);
    };
    assert.deepEqual(await requestLines('debug'), [
      'INFO GET /nowhere 404',
      'INFO GET /v1/models 200',
      'WARNING GET /v1/models 429',
      'DEBUG GET /health 200',
    ]);
    assert.deepEqual(await requestLines('warn'), ['WARNING GET /v1/models 429']);
  });

  it('builds the trace field only from a well-formed header and a known project', () => {
    assert.equal(traceField('abc/1;o=1', 'p'), 'projects/p/traces/abc');
    assert.equal(traceField('abc', undefined), null);
    assert.equal(traceField('not hex!/1', 'p'), null);
    assert.equal(traceField(undefined, 'p'), null);
  });
});

describe('process metrics', () => {
  it('sample the event-loop delay every EVENT_LOOP_SAMPLE_MS, not every 10 ms, and still report it', async () => {
    // prom-client starts Node's delay monitor through the perf_hooks module object: record what it asks for.
    const original = perfHooks.monitorEventLoopDelay;
    const resolutions: (number | undefined)[] = [];
    perfHooks.monitorEventLoopDelay = (options) => {
      resolutions.push(options?.resolution);
      return original(options);
    };
    let text: string;
    try {
      const a = await app({ processMetrics: true, rateLimit: false });
      try {
        await new Promise((resolve) => setTimeout(resolve, 3 * EVENT_LOOP_SAMPLE_MS));
        text = (await a.inject('/metrics')).body;
      } finally {
        await a.close();
      }
    } finally {
      perfHooks.monitorEventLoopDelay = original;
    }
    assert.ok(EVENT_LOOP_SAMPLE_MS > 10, "coarser than prom-client's 10 ms default");
    assert.deepEqual(resolutions, [EVENT_LOOP_SAMPLE_MS]);
    const p99 = /^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text)?.[1];
    assert.ok(p99 !== undefined && Number(p99) > 0, `no event-loop delay figure in:\n${text.slice(0, 500)}`);
  });
});

describe('web files', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'tiny-llm-web-'));
    mkdirSync(join(root, 'web'));
    writeFileSync(join(root, 'web', 'index.html'), '<!doctype html><title>chat</title>');
    writeFileSync(join(root, 'web', 'styles.css'), 'body{}');
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('answers / with a 503 in the error shape naming `npm run build` until the bundle exists, then serves the page and assets', async () => {
    const a = await app({ webRoot: root, rateLimit: false });
    try {
      const missing = await a.inject('/');
      assert.equal(missing.statusCode, 503);
      assert.match(String(missing.headers['content-type']), /^application\/json/);
      assert.equal(missing.headers['cache-control'], 'no-store');
      assert.equal(missing.headers['x-content-type-options'], 'nosniff');
      const { error } = JSON.parse(missing.body);
      assert.equal(error.code, 'page_not_built');
      assert.match(error.message, /npm run build/);
      mkdirSync(join(root, 'dist', 'web'), { recursive: true });
      writeFileSync(join(root, 'dist', 'web', 'app.js'), 'console.log(1);');
      const page = await a.inject('/');
      assert.equal(page.statusCode, 200);
      assert.match(String(page.headers['content-type']), /^text\/html/);
      assert.equal(page.headers['cache-control'], 'no-cache');
      assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
      const js = await a.inject('/static/app.js');
      assert.equal(js.body, 'console.log(1);');
      assert.match(String(js.headers['content-type']), /^text\/javascript/);
      assert.match(String(js.headers['cache-control']), /max-age=\d{5,}/);
      const css = await a.inject('/static/styles.css');
      assert.equal(css.body, 'body{}');
      assert.match(String(css.headers['content-type']), /^text\/css/);
      for (const url of [
        '/static/..%2Fpackage.json',
        '/static/.env',
        '/static/index.html',
        '/static/nope.js',
        '/static/%2e%2e%2fpackage.json',
      ]) {
        assert.equal((await a.inject(url)).statusCode, 404, url);
      }
    } finally {
      await a.close();
    }
  });
});

describe('model card data', () => {
  it('GET /api/model includes the training summary with at most 200 loss points; the curve SVG is served', async () => {
    const a = await app({ rateLimit: false });
    try {
      const body = (await a.inject('/api/model')).json();
      const training = body.training;
      assert.equal(training.final_loss, 0.5);
      assert.equal(training.steps, 500);
      assert.equal(training.wall_time_s, 12.5);
      assert.equal(training.tokens_per_s, 3000);
      assert.equal(training.preset, 'default');
      assert.equal(training.loss_curve.length, 200);
      assert.deepEqual(training.loss_curve[0], [1, losses[0]]);
      assert.deepEqual(training.loss_curve.at(-1), [500, losses[499]]);
      const svg = await a.inject('/api/model/loss-curve.svg');
      assert.equal(svg.statusCode, 200);
      assert.equal(svg.headers['content-type'], 'image/svg+xml');
      assert.match(svg.body, /^<svg/);
    } finally {
      await a.close();
    }
  });
});
