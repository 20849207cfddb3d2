// Every non-2xx answer of the built server (`bin/tiny-llm.js serve`), whoever produces it — Node's HTTP parser, Fastify's router, the body parser, the routes — is the error shape {error: {message, type, param, code}} with the security headers, and never repeats the request's bytes unescaped. Sent over raw sockets, as a hostile client would (the 408 of a request never finished is in test/reliability/hostile-clients.test.ts).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { exchange, jsonPost, type RawAnswer } from '../helpers/raw-http.js';

/** Markup a client puts in what it sends; no answer may carry it as is. */
const MARKER = '<img src=x onerror=alert(1)>';
const MARKER_URL = encodeURIComponent(MARKER);

/** The security headers every answer carries (see src/server/plugins/security.ts). */
function assertSecurityHeaders(answer: RawAnswer, what: string): void {
  const csp = answer.headers['content-security-policy'] ?? '';
  assert.match(csp, /default-src 'self'/, `${what}: no CSP`);
  assert.match(csp, /frame-ancestors 'none'/, `${what}: CSP without frame-ancestors`);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, what);
  assert.equal(answer.headers['x-content-type-options'], 'nosniff', what);
  assert.equal(answer.headers['x-frame-options'], 'DENY', what);
}

/** The error shape, exactly: one `error` object with the four fields and nothing else. */
function assertErrorShape(answer: RawAnswer, what: string): { message: string; code: string | null } {
  assert.match(answer.headers['content-type'] ?? '', /^application\/json/, `${what}: content type`);
  let body: { error?: Record<string, unknown> };
  try {
    body = JSON.parse(answer.body);
  } catch {
    assert.fail(`${what}: not JSON: ${answer.body.slice(0, 200)}`);
  }
  assert.deepEqual(Object.keys(body), ['error'], `${what}: ${answer.body}`);
  const err = body.error!;
  assert.deepEqual(Object.keys(err).sort(), ['code', 'message', 'param', 'type'], what);
  assert.ok(typeof err.message === 'string' && err.message.length > 0, what);
  assert.ok(
    ['invalid_request_error', 'not_found_error', 'server_error', 'rate_limit_error'].includes(
      err.type as string,
    ),
    `${what}: type ${err.type}`,
  );
  assert.doesNotMatch(answer.body, /\bat .*\.(ts|js|cjs):\d+|FST_ERR|HPE_/, `${what}: internals shown`);
  return err as { message: string; code: string | null };
}

interface Case {
  name: string;
  bytes: string | Buffer;
  status: number;
  code: string;
  /** Text the request carries that the answer must not hold as is. */
  echo?: string;
  headers?: Record<string, string>;
  /** The request could not be read (Node refused it): the connection must close after the answer. */
  closes?: boolean;
}

const long = (n: number) => 'a'.repeat(n);
const chat = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });

const CASES: Case[] = [
  // Fastify's router.
  {
    name: "a bad '%' escape",
    bytes: 'GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n',
    status: 400,
    code: 'invalid_url',
    echo: '%zz',
  },
  {
    name: 'a truncated UTF-8 escape in a path parameter',
    bytes: `GET /v1/models/%E0%A4%A${MARKER_URL} HTTP/1.1\r\nHost: t\r\n\r\n`,
    status: 400,
    code: 'invalid_url',
    echo: MARKER_URL,
  },
  {
    name: 'an over-long path parameter',
    bytes: `GET /v1/models/${long(600)}${MARKER_URL} HTTP/1.1\r\nHost: t\r\n\r\n`,
    status: 414,
    code: 'uri_too_long',
    echo: long(150),
  },
  {
    name: 'an over-long static file name',
    bytes: `GET /static/${long(300)}.js HTTP/1.1\r\nHost: t\r\n\r\n`,
    status: 414,
    code: 'uri_too_long',
    echo: long(150),
  },
  {
    name: 'an unknown path holding markup',
    bytes: `GET /nothing/${MARKER_URL}?q=${MARKER_URL} HTTP/1.1\r\nHost: t\r\n\r\n`,
    status: 404,
    code: 'not_found',
    echo: MARKER,
  },
  {
    name: 'an unknown path of raw markup',
    bytes: `GET /<script>alert(1)</script> HTTP/1.1\r\nHost: t\r\n\r\n`,
    status: 404,
    code: 'not_found',
    echo: '<script>',
  },
  {
    name: 'a GET on a POST route',
    bytes: 'GET /v1/chat/completions HTTP/1.1\r\nHost: t\r\n\r\n',
    status: 405,
    code: 'method_not_allowed',
    headers: { allow: 'POST' },
  },
  {
    name: 'a DELETE on /generate',
    bytes: 'DELETE /generate HTTP/1.1\r\nHost: t\r\n\r\n',
    status: 405,
    code: 'method_not_allowed',
    headers: { allow: 'POST' },
  },
  {
    name: 'a POST on a GET route with a parameter',
    bytes: jsonPost('/v1/models/tiny-llm', '{}'),
    status: 405,
    code: 'method_not_allowed',
    headers: { allow: 'GET, HEAD' },
  },
  {
    name: 'an OPTIONS preflight with CORS off',
    bytes: 'OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\n\r\n',
    status: 405,
    code: 'method_not_allowed',
  },
  // Node's HTTP parser (the clientError event).
  {
    name: 'headers over 16 KiB',
    closes: true,
    bytes: `GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ${long(20_000)}${MARKER}\r\n\r\n`,
    status: 431,
    code: 'headers_too_large',
    echo: MARKER,
  },
  {
    name: 'many headers over 16 KiB together',
    closes: true,
    bytes: `GET /health HTTP/1.1\r\nHost: t\r\n${Array.from({ length: 400 }, (_, i) => `X-H${i}: ${long(40)}\r\n`).join('')}\r\n`,
    status: 431,
    code: 'headers_too_large',
  },
  {
    name: 'a request line over 16 KiB',
    closes: true,
    bytes: `GET /${long(17_000)} HTTP/1.1\r\nHost: t\r\n\r\n`,
    status: 431,
    code: 'headers_too_large',
    echo: long(150),
  },
  {
    name: 'Content-Length not a number',
    closes: true,
    bytes: `POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 12${MARKER}\r\n\r\n{}`,
    status: 400,
    code: 'invalid_content_length',
    echo: MARKER,
  },
  {
    name: 'two different Content-Lengths',
    closes: true,
    bytes: 'POST /generate HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
    status: 400,
    code: 'invalid_content_length',
  },
  {
    name: 'Content-Length with Transfer-Encoding (request smuggling)',
    closes: true,
    bytes:
      'POST /generate HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    status: 400,
    code: 'invalid_transfer_encoding',
  },
  {
    name: 'a malformed chunk size',
    closes: true,
    bytes: `POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz${MARKER}\r\n`,
    status: 400,
    code: 'invalid_chunked_body',
    echo: MARKER,
  },
  {
    name: 'a method that is not HTTP',
    closes: true,
    bytes: `BR${MARKER}EW / HTTP/1.1\r\nHost: t\r\n\r\n`,
    status: 400,
    code: 'invalid_method',
    echo: MARKER,
  },
  {
    name: 'an HTTP version that does not exist',
    closes: true,
    bytes: 'GET /health HTTP/7.3\r\nHost: t\r\n\r\n',
    status: 400,
    code: 'invalid_http_version',
  },
  {
    name: 'a header name with a space',
    closes: true,
    bytes: `GET /health HTTP/1.1\r\nHost: t\r\nBad Header${MARKER}: 1\r\n\r\n`,
    status: 400,
    code: 'invalid_header',
    echo: MARKER,
  },
  {
    name: "HTTP/2's preface on an HTTP/1.1 port",
    closes: true,
    bytes: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    status: 400,
    code: 'bad_request',
  },
  {
    name: 'a request target that is not a path',
    closes: true,
    bytes: `GET ${MARKER} HTTP/1.1\r\nHost: t\r\n\r\n`,
    status: 400,
    code: 'invalid_url',
    echo: MARKER,
  },
  // Node's own answers outside the parser.
  {
    name: 'an Expect header other than 100-continue',
    closes: true,
    bytes: jsonPost('/generate', '{}', `Expect: ${MARKER}\r\n`),
    status: 417,
    code: 'expectation_failed',
    echo: MARKER,
  },
  {
    name: 'CONNECT',
    closes: true,
    bytes: 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
    status: 405,
    code: 'method_not_allowed',
  },
  // The body parser and the schemas.
  {
    name: 'a Content-Length over the 256 KiB body limit (refused before the body)',
    bytes: jsonPost('/generate', '{', '', String(300 * 1024)),
    status: 413,
    code: 'body_too_large',
  },
  {
    name: 'a chunked body over the limit',
    bytes: `POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${Array.from({ length: 5 }, () => `10000\r\n${' '.repeat(0x10000)}\r\n`).join('')}0\r\n\r\n`,
    status: 413,
    code: 'body_too_large',
  },
  {
    name: 'a text/plain body',
    bytes: `POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi`,
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'a body shorter than its Content-Length says, then more bytes (the rest read as a request)',
    bytes: `${jsonPost('/generate', '{"prompt"', '', '5')}: "x"}`,
    status: 400,
    code: 'invalid_json',
  },
  {
    name: 'JSON holding markup in an unknown field',
    bytes: jsonPost('/v1/chat/completions', `{"messages":[{"role":"user","content":"hi"}],"${MARKER}":1}`),
    status: 400,
    code: 'invalid_value',
    echo: MARKER,
  },
  {
    name: 'an unknown field with a 100 KiB name',
    bytes: jsonPost(
      '/v1/chat/completions',
      `{"messages":[{"role":"user","content":"hi"}],"${long(100_000)}":1}`,
    ),
    status: 400,
    code: 'invalid_value',
    echo: long(150),
  },
  {
    name: 'a model id holding markup',
    bytes: jsonPost('/v1/chat/completions', JSON.stringify({ ...JSON.parse(chat), model: MARKER })),
    status: 404,
    code: 'model_not_found',
    echo: MARKER,
  },
];

describe('non-2xx answers of the built server', () => {
  let server: BuiltServer;
  before(async () => {
    server = await startBuiltServer({ workers: 1 });
  });
  after(() => server.close());

  for (const c of CASES) {
    it(`${c.name}: ${c.status} ${c.code} in the error shape with the security headers`, async () => {
      const { answers, raw, ended } = await exchange(server.port, c.bytes, 5000, c.closes ? undefined : 1);
      assert.ok(answers.length >= 1, `no whole answer (${ended}): ${raw.slice(0, 300)}`);
      const answer = answers.at(-1)!;
      assert.equal(answer.status, c.status, `${c.name}: ${raw.slice(0, 400)}`);
      assertSecurityHeaders(answer, c.name);
      const err = assertErrorShape(answer, c.name);
      assert.equal(err.code, c.code, `${c.name}: ${answer.body}`);
      for (const [name, value] of Object.entries(c.headers ?? {}))
        assert.equal(answer.headers[name], value, `${c.name}: ${name}`);
      if (c.echo)
        assert.ok(!raw.includes(c.echo), `${c.name}: the answer repeats the request: ${raw.slice(0, 600)}`);
      if (c.closes) assert.equal(ended, 'closed', `${c.name}: the connection stayed open after the error`);
    });
  }

  it('a HEAD to an unknown path: 404 with the security headers and no body', async () => {
    const { raw } = await exchange(
      server.port,
      'HEAD /nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n',
    );
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(raw)?.[1]);
    assert.equal(status, 404);
    assert.match(raw, /content-security-policy: default-src 'self'/i);
    assert.match(raw, /x-content-type-options: nosniff/i);
    assert.ok(raw.endsWith('\r\n\r\n'), 'a HEAD answer has no body');
  });

  it('a parse error after pipelined requests: the whole requests are answered first, in order, then the 400', async () => {
    const ok = jsonPost('/generate', JSON.stringify({ prompt: 'hi', max_new_tokens: 2 }));
    const { answers, raw } = await exchange(
      server.port,
      `GET /health HTTP/1.1\r\nHost: t\r\n\r\n${ok}NOT HTTP\r\n\r\n`,
    );
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 400],
      raw.slice(0, 800),
    );
    assert.equal(JSON.parse(answers[0].body).status, 'ok');
    assert.equal(typeof JSON.parse(answers[1].body).response, 'string');
    assertSecurityHeaders(answers[2], 'pipelined parse error');
    assertErrorShape(answers[2], 'pipelined parse error');
  });
});
