// Security checks a public chatbot needs, against the built server (`bin/tiny-llm.js serve`) where a server takes part:
// a CSP without inline scripts on every kind of answer, whoever produces it; a rate limit keyed on the real client
// (the connection's peer unless a proxy is trusted: on Cloud Run or when configured; IPv6 by /64); no HTML sinks in
// the page's code; and, in process (it needs routes that fail on purpose), no stack traces in 500 answers.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { BODY_LIMIT, buildApp } from '../../src/server/app.js';
import { completeText } from '../../src/server/completion.js';
import { createLogger } from '../../src/server/logging.js';
import { loadServedModel, type ServedModel } from '../../src/server/model.js';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { repoRoot } from '../helpers/fixtures.js';
import { exchange, type RawExchange } from '../helpers/raw-http.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

let tiny: TinyModel;
let model: ServedModel;
before(async () => {
  tiny = await createTinyModel();
  model = await loadServedModel(tiny.dir);
});
after(() => tiny.remove());

const quiet = { systemPrompt: 's', workers: 1, logger: false as const, processMetrics: false };

/** Directive name → its sources. */
function csp(header: string | undefined): Map<string, string[]> {
  assert.ok(header, 'no Content-Security-Policy header');
  const out = new Map<string, string[]>();
  for (const part of header.split(';')) {
    const [name, ...sources] = part.trim().split(/\s+/);
    if (name) out.set(name.toLowerCase(), sources);
  }
  return out;
}

describe('content security policy (built server)', () => {
  it('every kind of answer forbids inline and eval’d script, inline style, plugins, framing and base rewriting', async () => {
    // A limit of 6: the six routed requests below that count against it spend it (probes, /metrics, unknown routes
    // and what is refused before routing do not count), and the last one is the 429.
    const server = await startBuiltServer({ workers: 1, modelDir: tiny.dir, rateLimit: 6 });
    try {
      const post = (url: string, payload: string, type = 'application/json') =>
        exchange(
          server.port,
          `POST ${url} HTTP/1.1\r\nHost: t\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`,
          10_000,
          1,
        );
      const get = (url: string, headers = '') =>
        exchange(server.port, `GET ${url} HTTP/1.1\r\nHost: t\r\n${headers}\r\n`, 10_000, 1);
      const raw = (bytes: string) => exchange(server.port, bytes, 10_000, 1);
      const responses: Record<string, RawExchange> = {
        page: await get('/'),
        static: await get('/static/styles.css'),
        health: await get('/health'),
        ready: await get('/ready'),
        metrics: await get('/metrics'),
        '404': await get('/nothing-here'),
        '405': await get('/generate'),
        '400 bad % escape': await get('/%zz'),
        '414 long path parameter': await get(`/v1/models/${'a'.repeat(300)}`),
        '431 huge headers': await get('/health', `X-Big: ${'a'.repeat(20_000)}\r\n`),
        '400 from the HTTP parser': await raw('GET /health HTTP/7.7\r\nHost: t\r\n\r\n'),
        '417 expectation': await raw('GET /health HTTP/1.1\r\nHost: t\r\nExpect: x\r\n\r\n'),
        '413': await post('/generate', JSON.stringify({ prompt: 'x'.repeat(BODY_LIMIT) })),
        '415': await post('/generate', 'prompt=x', 'text/plain'),
        '400': await post('/v1/completions', '{"prompt": 5}'),
        ok: await post('/generate', JSON.stringify({ prompt: 'hi', max_new_tokens: 2 })),
        '429': await post('/generate', JSON.stringify({ prompt: 'hi', max_new_tokens: 2 })),
      };
      for (const [name, { answers, raw: text }] of Object.entries(responses)) {
        assert.equal(answers.length, 1, `${name}: ${text.slice(0, 200)}`);
        const res = answers[0];
        if (/^\d{3}/.test(name)) assert.equal(res.status, Number(name.slice(0, 3)), `${name}: ${res.body}`);
        const d = csp(res.headers['content-security-policy']);
        const script = d.get('script-src') ?? d.get('default-src') ?? [];
        const style = d.get('style-src') ?? d.get('default-src') ?? [];
        assert.deepEqual(script, ["'self'"], `${name}: script-src`);
        for (const bad of [
          "'unsafe-inline'",
          "'unsafe-eval'",
          "'unsafe-hashes'",
          '*',
          'data:',
          'http:',
          'https:',
        ])
          assert.ok(!script.includes(bad) && !style.includes(bad), `${name}: ${bad} allowed`);
        assert.deepEqual(d.get('object-src'), ["'none'"], name);
        assert.deepEqual(d.get('frame-ancestors'), ["'none'"], name);
        assert.deepEqual(d.get('base-uri'), ["'none'"], name);
        assert.equal(res.headers['x-content-type-options'], 'nosniff', name);
        assert.equal(res.headers['x-frame-options'], 'DENY', name);
      }
      console.log(`CSP checked on ${Object.keys(responses).join(', ')}`);
    } finally {
      await server.close();
    }
  });

  it('the page needs nothing the CSP forbids: no inline script, no event-handler attributes, no style attributes', () => {
    const html = readFileSync(join(repoRoot, 'web', 'index.html'), 'utf8');
    for (const tag of html.match(/<script\b[^>]*>/gi) ?? [])
      assert.match(tag, /\ssrc="\/static\/[^"]+"/, `an inline script: ${tag}`);
    assert.doesNotMatch(html, /<script\b[^>]*>\s*\S[^<]*<\/script>/i, 'a script with a body');
    assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'an inline event handler');
    assert.doesNotMatch(html, /\sstyle\s*=/i, 'a style attribute');
    assert.doesNotMatch(html, /<style\b/i, 'an inline stylesheet');
    assert.doesNotMatch(html, /javascript:/i, 'a javascript: URL');
  });
});

/** Every file below a folder (the page's sources and, once built, its bundle). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('model output never becomes HTML', () => {
  it('no innerHTML, outerHTML, insertAdjacentHTML, document.write, eval or Function in web/ or the built bundle', () => {
    const files = [...filesUnder(join(repoRoot, 'web')), ...filesUnder(join(repoRoot, 'dist', 'web'))].filter(
      (f) => /\.(ts|js|mjs|html)$/.test(f),
    );
    assert.ok(
      files.some((f) => f.endsWith('main.ts')),
      'the page sources were not found',
    );
    const sinks =
      /\b(?:innerHTML|outerHTML|insertAdjacentHTML|srcdoc)\b|\bdocument\.write|\beval\s*\(|\bnew Function\s*\(/;
    const hits: string[] = [];
    for (const file of files) {
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (sinks.test(line))
            hits.push(`${file.slice(repoRoot.length + 1)}:${i + 1}: ${line.trim().slice(0, 120)}`);
        });
    }
    console.log(
      `checked ${files.length} files under web/ and dist/web/ for HTML sinks: ${hits.length} found`,
    );
    assert.deepEqual(hits, []);
  });
});

describe('no stack traces in responses', () => {
  it('a thrown error and a generation that fails inside its worker answer a bare 500; the log keeps the detail', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
        done();
      },
    });
    const app: FastifyInstance = await buildApp({
      model,
      ...quiet,
      rateLimit: false,
      logger: createLogger({ level: 'info', destination }),
    });
    // Two real failure paths: an exception in a handler, and a job the worker cannot run (its tokenizer
    // throws on a prompt that is not a string), answered through the server's own completion code.
    app.get('/test/throw', async () => {
      throw new Error('secret detail from /srv/app/db.ts:12:3');
    });
    app.post('/test/worker-failure', async (request, reply) => {
      const sampling = {
        maxNewTokens: 3,
        temperature: 1,
        topK: 50,
        topP: 1,
        repetitionPenalty: 1,
        seed: 1,
        stop: [],
      };
      return completeText(request, reply, {
        request: { ...sampling, prompt: 5 as unknown as string },
        promptParam: 'prompt',
        maxParam: 'max_tokens',
      });
    });
    try {
      await app.generation.ready;
      const thrown = await app.inject('/test/throw');
      const failed = await app.inject({ method: 'POST', url: '/test/worker-failure', payload: {} });
      for (const res of [thrown, failed]) {
        assert.equal(res.statusCode, 500, res.body);
        const err = res.json().error;
        assert.equal(err.type, 'server_error');
        assert.doesNotMatch(res.body, /secret|\.(ts|js):\d+|\bat [A-Za-z.<]+ \(|Error:|TypeError/, res.body);
        assert.doesNotMatch(err.message, /encode|tokeniz/i, 'internal detail leaked');
      }
      assert.equal(thrown.json().error.code, 'internal_error');
      assert.equal(failed.json().error.code, 'generation_failed');
      // The operators still see what happened.
      await new Promise((r) => setTimeout(r, 50));
      const logged = JSON.stringify(lines);
      assert.match(logged, /secret detail from \/srv\/app\/db\.ts/);
      assert.match(logged, /generation failed in worker/);
      console.log(`500 bodies: ${thrown.body} | ${failed.body}`);
      assert.equal((await app.inject('/health')).statusCode, 200);
    } finally {
      await app.close();
    }
  });
});

/** Requests per client per minute on these servers: the fourth from one client is a 429. */
const LIMIT = 3;

/** A built server with the rate limit at LIMIT and exactly the proxy settings given (none from this shell). */
function serve(env: Record<string, string>, args: string[] = []): Promise<BuiltServer> {
  return startBuiltServer({
    workers: 1,
    modelDir: tiny.dir,
    rateLimit: LIMIT,
    args,
    env: { K_SERVICE: '', TRUST_PROXY_HOPS: '', ...env },
  });
}

/** Sends one request per X-Forwarded-For value (undefined: no header), one after the other; the statuses. */
async function statuses(server: BuiltServer, forwarded: Array<string | undefined>): Promise<number[]> {
  const out: number[] = [];
  for (const xff of forwarded) {
    const res = await fetch(`${server.url}/v1/models`, {
      headers: xff === undefined ? {} : { 'x-forwarded-for': xff },
    });
    await res.arrayBuffer();
    out.push(res.status);
  }
  return out;
}

/** The remoteIp of every logged request line. */
function loggedIps(server: BuiltServer): string[] {
  return server
    .output()
    .split('\n')
    .filter((l) => l.includes('"httpRequest"'))
    .map((l) => JSON.parse(l).httpRequest.remoteIp);
}

describe('rate limit keyed on the real client: proxy trust (built server)', () => {
  it('nothing configured: X-Forwarded-For is ignored; a client rotating it is limited like any other', async () => {
    const s = await serve({});
    try {
      const rotating = await statuses(
        s,
        [1, 2, 3, 4, 5].map((i) => `198.51.100.${i}`),
      );
      console.log(`no proxy, rotating X-Forwarded-For: ${rotating.join(' ')}`);
      assert.deepEqual(rotating, [200, 200, 200, 429, 429]);
      assert.match(
        s.output(),
        /client address of the connection \(X-Forwarded-For ignored\) \(no proxy configured\)/,
      );
      assert.deepEqual([...new Set(loggedIps(s))], ['127.0.0.1'], 'logs name the peer, not the header');
    } finally {
      await s.close();
    }
  });

  it('on Cloud Run ($K_SERVICE): one hop is trusted; a forged left part buys nothing, each real client has its own budget', async () => {
    const s = await serve({ K_SERVICE: 'tiny-llm' });
    try {
      assert.match(
        s.output(),
        /from X-Forwarded-For through 1 trusted proxy hop \(Cloud Run's front end \(\$K_SERVICE is set\)\)/,
      );
      // The client 203.0.113.7 forges a new left-most entry each time; Cloud Run's front end appends the real one.
      const forged = await statuses(
        s,
        [1, 2, 3, 4].map((i) => `198.51.100.${i}, 203.0.113.7`),
      );
      const other = await statuses(s, ['192.0.2.1', '192.0.2.1']);
      console.log(`Cloud Run, forged left parts: ${forged.join(' ')}; another client: ${other.join(' ')}`);
      assert.deepEqual(forged, [200, 200, 200, 429]);
      assert.deepEqual(other, [200, 200]);
      assert.ok(loggedIps(s).includes('203.0.113.7'));
      const limited = await fetch(`${s.url}/v1/models`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
      assert.equal(limited.status, 429);
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      assert.equal(limited.headers.get('x-content-type-options'), 'nosniff');
      assert.match(limited.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
      const body = await limited.json();
      assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(body.error.code, 'rate_limit_exceeded');
    } finally {
      await s.close();
    }
  });

  it('an IPv6 client is limited by its /64: rotating the interface part buys nothing, another /64 is another client', async () => {
    const s = await serve({ K_SERVICE: 'tiny-llm' });
    try {
      const rotating = await statuses(
        s,
        [1, 2, 3, 4, 5].map((i) => `2001:db8:aa:bb:${i}::${i}`),
      );
      const other = await statuses(s, ['2001:db8:aa:bc::1']);
      console.log(`IPv6 within one /64: ${rotating.join(' ')}; another /64: ${other.join(' ')}`);
      assert.deepEqual(rotating, [200, 200, 200, 429, 429]);
      assert.deepEqual(other, [200]);
    } finally {
      await s.close();
    }
  });

  it('configured beats detected: TRUST_PROXY_HOPS=0 on Cloud Run ignores the header; --trust-proxy-hops 2 takes the second entry from the right', async () => {
    const none = await serve({ K_SERVICE: 'tiny-llm', TRUST_PROXY_HOPS: '0' });
    try {
      assert.deepEqual(
        await statuses(
          none,
          [1, 2, 3, 4].map((i) => `198.51.100.${i}`),
        ),
        [200, 200, 200, 429],
      );
      assert.match(none.output(), /X-Forwarded-For ignored\) \(\$TRUST_PROXY_HOPS\)/);
    } finally {
      await none.close();
    }
    const two = await serve({ TRUST_PROXY_HOPS: '1' }, ['--trust-proxy-hops', '2']);
    try {
      // client, then the two proxies' entries: the client is the one the outer proxy saw.
      const seen = await statuses(
        two,
        [1, 2, 3, 4].map((i) => `10.0.0.${i}, 203.0.113.9, 10.1.1.1`),
      );
      assert.deepEqual(seen, [200, 200, 200, 429]);
      assert.deepEqual(await statuses(two, ['203.0.113.10, 10.1.1.1']), [200]);
      assert.ok(loggedIps(two).includes('203.0.113.9'));
      assert.match(two.output(), /through 2 trusted proxy hops \(--trust-proxy-hops\)/);
    } finally {
      await two.close();
    }
  });
});
