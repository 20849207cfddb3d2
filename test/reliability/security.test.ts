// Security checks a public chatbot needs: a CSP without inline scripts on every response, no HTML sinks in the
// page's code, no stack traces in answers from real internal failures, and a rate limit keyed on the real client.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { BODY_LIMIT, buildApp } from '../../src/server/app.js';
import { completeText } from '../../src/server/completion.js';
import { createLogger } from '../../src/server/logging.js';
import { loadServedModel, type ServedModel } from '../../src/server/model.js';
import { repoRoot } from '../helpers/fixtures.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';
import { metricValue, scrape } from '../server/harness.js';

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

describe('content security policy', () => {
  it('every kind of response forbids inline and eval’d script, inline style, plugins, framing and base rewriting', async () => {
    const app = await buildApp({ model, ...quiet, rateLimit: { max: 2, windowMs: 60_000 } });
    try {
      const post = (url: string, payload: string, type = 'application/json') =>
        app.inject({ method: 'POST', url, payload, headers: { 'content-type': type } });
      const responses = {
        page: await app.inject('/'),
        static: await app.inject('/static/styles.css'),
        health: await app.inject('/health'),
        metrics: await app.inject('/metrics'),
        '404': await app.inject('/nothing-here'),
        '413': await post('/generate', JSON.stringify({ prompt: 'x'.repeat(BODY_LIMIT) })),
        '415': await post('/generate', 'prompt=x', 'text/plain'),
        '400': await post('/v1/completions', '{"prompt": 5}'),
        ok: await post('/generate', JSON.stringify({ prompt: 'hi', max_new_tokens: 2 })),
        '429': await post('/generate', JSON.stringify({ prompt: 'hi', max_new_tokens: 2 })),
      };
      assert.equal(responses['429'].statusCode, 429, 'the third request is over the limit of 2');
      for (const [name, res] of Object.entries(responses)) {
        const d = csp(res.headers['content-security-policy'] as string | undefined);
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
      }
    } finally {
      await app.close();
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

describe('rate limit keyed on the real client', () => {
  async function listening(trustProxy: number): Promise<{ app: FastifyInstance; url: string }> {
    const app = await buildApp({ model, ...quiet, trustProxy, rateLimit: { max: 3, windowMs: 60_000 } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
  }
  const chat = (url: string, xff?: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(xff ? { 'x-forwarded-for': xff } : {}) },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
    });
  /** Sends one after the other, so the server counts them in this order. */
  const statuses = async (requests: Array<() => Promise<Response>>) => {
    const out: number[] = [];
    for (const send of requests) {
      const res = await send();
      await res.arrayBuffer();
      out.push(res.status);
    }
    return out;
  };

  it('behind one proxy hop (real sockets): the address that proxy saw is the key; a forged left part changes nothing', async () => {
    const { app, url } = await listening(1);
    try {
      await app.generation.ready;
      const before = await scrape(app);
      // The client 203.0.113.7 forges a different left-most entry on every request.
      const forged = await statuses(
        [1, 2, 3, 4, 5].map((i) => () => chat(url, `198.51.100.${i}, 203.0.113.7`)),
      );
      assert.deepEqual(forged, [200, 200, 200, 429, 429]);
      // Another client behind the same proxy has its own budget; the proxy's own address (no header) too.
      assert.deepEqual(
        await statuses([() => chat(url, '192.0.2.1'), () => chat(url, '192.0.2.1')]),
        [200, 200],
      );
      assert.deepEqual(await statuses([1, 2, 3, 4].map(() => () => chat(url))), [200, 200, 200, 429]);
      const limited = await chat(url, '203.0.113.7');
      assert.equal(limited.status, 429);
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      assert.equal((await limited.json()).error.type, 'rate_limit_error');
      // Refused before any generation: only the 8 admitted requests produced tokens.
      const text = await scrape(app);
      const tokens =
        metricValue(text, 'tiny_llm_generated_tokens_total') -
        metricValue(before, 'tiny_llm_generated_tokens_total');
      assert.ok(tokens <= 8 * 2, `${tokens} tokens for 8 admitted requests of 2`);
    } finally {
      await app.close();
    }
  });

  it('with no trusted proxy, X-Forwarded-For is ignored: rotating it does not buy more requests', async () => {
    const { app, url } = await listening(0);
    try {
      await app.generation.ready;
      const rotating = await statuses([1, 2, 3, 4, 5].map((i) => () => chat(url, `198.51.100.${i}`)));
      assert.deepEqual(rotating, [200, 200, 200, 429, 429]);
    } finally {
      await app.close();
    }
  });
});
