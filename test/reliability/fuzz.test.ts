// Bad input, generated, against the built server (`bin/tiny-llm.js serve`, as the image runs it): over 1 000
// fast-check requests to every JSON endpoint never get a 5xx, always get the documented error shape (naming the
// field for validation errors) with the security headers, and leave the server healthy after each endpoint's
// batch (/health fast, nothing queued or running, resident memory within a bound, a normal request answered).
// Raw-socket clients (partial requests, pipelining, huge headers, unread streams) are in hostile-clients.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { residentBytes } from '../../scripts/load/serve-process.js';
import { BODY_LIMIT } from '../../src/server/app.js';
import { type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { metricValue, parseSse, scrape } from '../server/harness.js';

let server: BuiltServer;
const RUNS_PER_ENDPOINT = Number(process.env.FUZZ_RUNS ?? 400);
const statusCounts = new Map<number, number>();
const kindCounts = new Map<string, number>();
const MiB = 1024 * 1024;
/**
 * How much the server's resident memory (main thread and workers) may grow over its warmed-up size across the
 * batches: the heaps growing to their working size under 1 200 requests of up to 256 KiB each (about 45 MiB seen
 * on a loaded machine). A server that kept 80 KiB per request would pass it.
 */
const RSS_GROWTH_BOUND = 96 * MiB;
/** /health must answer within this after every batch (best of three tries: this machine is shared). */
const HEALTH_MS = 100;
let rssStart = 0;
let peakGrowth = 0;

before(async () => {
  // 128-token context and max tokens of 1–3 in valid bodies keep each generation at a few milliseconds.
  server = await startBuiltServer({ workers: 2 });
  // Warm up (a generation, a refused body at the size limit) so the baseline is the server at work.
  await post('/generate', JSON.stringify({ prompt: 'warm', max_new_tokens: 3 }), {
    'content-type': 'application/json',
  });
  await post('/generate', JSON.stringify({ prompt: 'x'.repeat(BODY_LIMIT) }), {
    'content-type': 'application/json',
  });
  rssStart = residentBytes(server.pid)!.rss;
});
after(async () => {
  await server.close();
});

/** A JSON literal written as is (1e999, -0, deep nesting), which JSON.stringify cannot produce. */
class Raw {
  constructor(readonly text: string) {}
}

/** JSON text of a value that may hold Raw literals anywhere inside. */
function toJson(value: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(value, (_key, v) => {
    if (v instanceof Raw) {
      raws.push(v.text);
      return `\u0000raw${raws.length - 1}\u0000`;
    }
    return v;
  });
  return text.replace(/"\\u0000raw(\d+)\\u0000"/g, (_m, i: string) => raws[Number(i)]);
}

// --- the contract, stated independently of the schemas: is a value (as the server parses it) acceptable? ---
type Check = (v: unknown) => boolean;
const codePoints = (s: string) => [...s].length;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => isNum(v) && Number.isInteger(v);
const nullable =
  (check: Check): Check =>
  (v) =>
    v === null || check(v);
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const shortString = (v: unknown) => typeof v === 'string' && codePoints(v) >= 1 && codePoints(v) <= 256;

const SAMPLING: Record<string, Check> = {
  temperature: nullable((v) => isNum(v) && v >= 0 && v <= 2),
  top_p: nullable((v) => isNum(v) && v > 0 && v <= 1),
  top_k: nullable((v) => isInt(v) && v >= 0 && v <= 1_000_000),
  repetition_penalty: nullable((v) => isNum(v) && v > 0 && v <= 10),
  seed: nullable((v) => isInt(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER),
};
const tokenCount = nullable((v) => isInt(v) && v >= 1 && v <= 1_000_000);
const prompt: Check = (v) => typeof v === 'string' && codePoints(v) >= 1;
const VOCAB = 50257;
const tokenId = (v: unknown) => isInt(v) && v >= 0 && v < VOCAB;
/** /v1/completions' prompt: a text, a batch of texts, token ids, or a batch of id lists (the first item decides). */
const completionPrompt: Check = (v) =>
  prompt(v) ||
  (Array.isArray(v) &&
    v.length >= 1 &&
    (isInt(v[0])
      ? v.every(tokenId)
      : v.length <= 64 &&
        (Array.isArray(v[0])
          ? v.every((ids) => Array.isArray(ids) && ids.length >= 1 && ids.every(tokenId))
          : v.every(prompt))));
const OPENAI_COMMON: Record<string, Check> = {
  ...SAMPLING,
  // Any string up to 256 passes the schema; one other than ours is then a 404 (see modelExpect).
  model: nullable((v) => typeof v === 'string' && codePoints(v) <= 256),
  stream: nullable((v) => typeof v === 'boolean'),
  stream_options: nullable(
    (v) =>
      isObject(v) &&
      Object.keys(v).every((k) => k === 'include_usage') &&
      (v.include_usage === undefined || nullable((u) => typeof u === 'boolean')(v.include_usage)),
  ),
  stop: nullable((v) => shortString(v) || (Array.isArray(v) && v.length <= 16 && v.every(shortString))),
  n: nullable((v) => isInt(v) && v >= 1 && v <= 8),
  presence_penalty: nullable((v) => isNum(v) && v >= -2 && v <= 2),
  frequency_penalty: nullable((v) => isNum(v) && v >= -2 && v <= 2),
  user: nullable((v) => typeof v === 'string' && codePoints(v) <= 256),
};
/** Every field an endpoint knows (generated extra fields avoid them). */
const KNOWN_FIELDS = new Set([
  ...'model messages prompt stream stream_options max_tokens max_completion_tokens max_new_tokens stop n'.split(
    ' ',
  ),
  ...'temperature top_p top_k repetition_penalty seed presence_penalty frequency_penalty logit_bias'.split(
    ' ',
  ),
  ...'user metadata store service_tier logprobs top_logprobs echo best_of suffix tools tool_choice'.split(
    ' ',
  ),
  ...'functions function_call response_format modalities audio prediction reasoning_effort verbosity'.split(
    ' ',
  ),
  ...'web_search_options parallel_tool_calls prompt_cache_key safety_identifier'.split(' '),
]);
const contentPart = (p: unknown) =>
  isObject(p) && p.type === 'text' && typeof p.text === 'string' && Object.keys(p).length === 2;
const message: Check = (m) =>
  isObject(m) &&
  ['system', 'developer', 'user', 'assistant'].includes(m.role as string) &&
  (typeof m.content === 'string' ||
    m.content === null ||
    (Array.isArray(m.content) && m.content.length <= 64 && m.content.every(contentPart))) &&
  (m.name === undefined || (typeof m.name === 'string' && codePoints(m.name) <= 256));

interface Endpoint {
  url: string;
  fields: Record<string, Check>;
  required: string[];
  /** Names a context-length error must mention. */
  promptParam: string;
  maxParams: string[];
  base: fc.Arbitrary<Record<string, unknown>>;
}

const text = fc.string({ minLength: 1, maxLength: 30 });
const small = fc.integer({ min: 1, max: 3 });
const endpoints: Endpoint[] = [
  {
    url: '/generate',
    fields: { prompt, max_new_tokens: tokenCount, ...SAMPLING },
    required: ['prompt'],
    promptParam: 'prompt',
    maxParams: ['max_new_tokens'],
    base: fc.record({ prompt: text, max_new_tokens: small, seed: fc.integer() }),
  },
  {
    url: '/v1/completions',
    fields: {
      prompt: completionPrompt,
      max_tokens: tokenCount,
      ...OPENAI_COMMON,
      echo: nullable((v) => typeof v === 'boolean'),
      logprobs: nullable((v) => isInt(v) && v >= 0 && v <= 20),
    },
    required: ['prompt'],
    promptParam: 'prompt',
    maxParams: ['max_tokens'],
    base: fc.record({ prompt: text, max_tokens: small, stream: fc.boolean(), seed: fc.integer() }),
  },
  {
    url: '/v1/chat/completions',
    fields: {
      messages: (v) => Array.isArray(v) && v.length >= 1 && v.length <= 512 && v.every(message),
      max_tokens: tokenCount,
      max_completion_tokens: tokenCount,
      ...OPENAI_COMMON,
    },
    required: ['messages'],
    promptParam: 'messages',
    maxParams: ['max_tokens', 'max_completion_tokens'],
    base: fc.record({
      messages: fc.array(
        fc.record({ role: fc.constantFrom('system', 'developer', 'user', 'assistant'), content: text }),
        { minLength: 1, maxLength: 3 },
      ),
      max_tokens: small,
      stream: fc.boolean(),
      stream_options: fc.constant({ include_usage: true }),
    }),
  },
];

// --- hostile values ---
const deep = (depth: number, open: string, close: string, leaf = '') =>
  new Raw(open.repeat(depth) + leaf + close.repeat(depth));
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    null,
    true,
    false,
    0,
    -0,
    -1,
    1,
    0.5,
    1.5,
    2,
    2.0000001,
    10,
    1e6,
    1e6 + 1,
    2 ** 53,
    -(2 ** 53),
  ),
  fc.constantFrom(1e300, -1e300, 5e-324, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 0.1 + 0.2),
  fc.integer(),
  fc.double(),
  fc.constantFrom('NaN', 'Infinity', '-Infinity', '1e999', '1', '0', 'true', 'null', '', ' ', '\u0000'),
  fc.constantFrom(
    new Raw('1e999'),
    new Raw('-1e999'),
    new Raw('1E400'),
    new Raw('-0'),
    new Raw('1e-400'),
    new Raw('0.1e1'),
    new Raw('100000000000000000000000000000'),
    new Raw('9007199254740993'),
  ),
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  // Lone and paired surrogates, written by JSON.stringify as \ud800-style escapes.
  fc.constantFrom('\ud800', '\udfff', 'a\ud83d', '\ude00b', '\ud83d\ude00'),
  fc.integer({ min: 257, max: 120_000 }).map((n) => 'x'.repeat(n)),
  fc.array(fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.constant(null)), { maxLength: 6 }),
  fc.dictionary(
    fc.string({ maxLength: 8 }),
    fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.boolean()),
  ),
  fc.jsonValue({ maxDepth: 3 }),
  fc.integer({ min: 1, max: 20_000 }).map((d) => deep(d, '[', ']')),
  fc.integer({ min: 1, max: 10_000 }).map((d) => deep(d, '{"a":', '}', '1')),
);

/** What the server sees for a value: JSON.stringify turns NaN into null, Raw 1e999 becomes Infinity, etc. */
const parsed = (v: unknown) => (v === undefined ? undefined : JSON.parse(toJson(v)));

type Expect =
  | { kind: 'valid' }
  | { kind: 'invalid'; field: string }
  /** Refused naming one of these unknown fields (whichever the validator met first). */
  | { kind: 'unknown'; fields: string[] }
  | { kind: 'status'; status: number; code?: string }
  | { kind: 'no-5xx' };

interface Case {
  kind: string;
  payload: string | Buffer;
  headers: Record<string, string>;
  expect: Expect;
}

const json = { 'content-type': 'application/json' };

function caseArbitrary(ep: Endpoint): fc.Arbitrary<Case> {
  const fieldNames = Object.keys(ep.fields);
  const mutateField = fc
    .tuple(ep.base, fc.constantFrom(...fieldNames), hostileValue)
    .map(([body, field, value]): Case => {
      const valid = ep.fields[field](parsed(value));
      const otherModel = field === 'model' && valid && parsed(value) !== null && parsed(value) !== 'tiny-llm';
      return {
        kind: 'wrong value',
        payload: toJson({ ...body, [field]: value }),
        headers: json,
        expect: otherModel
          ? { kind: 'status', status: 404, code: 'model_not_found' }
          : valid
            ? { kind: 'valid' }
            : { kind: 'invalid', field },
      };
    });
  const missing = fc.tuple(ep.base, fc.subarray(fieldNames, { minLength: 1 })).map(([body, drop]): Case => {
    const kept = Object.fromEntries(Object.entries(body).filter(([k]) => !drop.includes(k)));
    const lost = ep.required.find((r) => drop.includes(r));
    return {
      kind: 'missing fields',
      payload: toJson(kept),
      headers: json,
      expect: lost ? { kind: 'invalid', field: lost } : { kind: 'valid' },
    };
  });
  const extra = fc
    .tuple(
      ep.base,
      fc.dictionary(
        fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !KNOWN_FIELDS.has(k) && k !== '__proto__'),
        fc.oneof(hostileValue, fc.constant({ a: 1 })),
        { minKeys: 1, maxKeys: 4 },
      ),
    )
    .map(([body, more]): Case => {
      // Unknown fields are refused by name; `constructor: {prototype: …}` is refused as poisoning first.
      const poisons = isObject(more.constructor) && 'prototype' in more.constructor;
      return {
        kind: 'extra fields',
        payload: toJson({ ...more, ...body }),
        headers: json,
        expect: poisons
          ? { kind: 'status', status: 400, code: 'forbidden_key' }
          : { kind: 'unknown', fields: Object.keys(more) },
      };
    });
  const messageField = ep.url.endsWith('chat/completions')
    ? [
        fc
          .tuple(
            ep.base,
            fc.constantFrom('role', 'content', 'name'),
            fc.option(hostileValue, { nil: undefined }),
          )
          .map(([body, key, value]): Case => {
            const messages = (body.messages as Array<Record<string, unknown>>).map((m) => ({ ...m }));
            if (value === undefined) delete messages[0][key];
            else messages[0][key] = value;
            const ok = message(parsed(messages[0]));
            return {
              kind: 'wrong message',
              payload: toJson({ ...body, messages }),
              headers: json,
              expect: ok ? { kind: 'valid' } : { kind: 'invalid', field: `messages[0].${key}` },
            };
          }),
      ]
    : [];
  const poison = fc
    .tuple(
      ep.base,
      fc.constantFrom('"__proto__":{"polluted":1}', '"constructor":{"prototype":{"polluted":1}}'),
    )
    .map(([body, key]): Case => {
      const inner = toJson(body);
      return {
        kind: 'prototype keys',
        payload: `{${key},${inner.slice(1)}`,
        headers: json,
        expect: { kind: 'status', status: 400, code: 'forbidden_key' },
      };
    });
  const rootNotObject = fc
    .oneof(
      fc.jsonValue({ maxDepth: 2 }).filter((v) => !isObject(v)),
      fc.constant([]),
    )
    .map(
      (v): Case => ({
        kind: 'root not an object',
        payload: toJson(v),
        headers: json,
        expect: { kind: 'invalid', field: '' },
      }),
    );
  const truncated = ep.base.chain((body) => {
    const full = toJson(body);
    return fc.integer({ min: 0, max: full.length - 1 }).map(
      (cut): Case => ({
        kind: 'truncated JSON',
        payload: full.slice(0, cut),
        headers: json,
        expect: { kind: 'status', status: 400 },
      }),
    );
  });
  const invalidUtf8 = fc
    .tuple(
      ep.base,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0x80, max: 0xff })), { minLength: 1, maxLength: 4 }),
    )
    .map(([body, inserts]): Case => {
      const bytes = [...Buffer.from(toJson(body), 'utf8')];
      for (const [at, byte] of inserts) bytes.splice(at % (bytes.length + 1), 0, byte);
      // A stray byte inside a string decodes to U+FFFD (valid); elsewhere it breaks the JSON (400).
      return {
        kind: 'invalid UTF-8',
        payload: Buffer.from(bytes),
        headers: json,
        expect: { kind: 'no-5xx' },
      };
    });
  const contentType = fc
    .tuple(
      ep.base,
      fc.constantFrom(
        'text/plain',
        'text/html',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/xml',
        'application/json-patch+json',
        'application/octet-stream',
        'jsonx',
        null,
      ),
    )
    .map(
      ([body, type]): Case => ({
        kind: 'wrong content type',
        payload: toJson(body),
        headers: type === null ? {} : { 'content-type': type },
        expect: { kind: 'status', status: 415, code: 'unsupported_media_type' },
      }),
    );
  const jsonSpellings = fc
    .tuple(
      ep.base,
      fc.constantFrom(
        'APPLICATION/JSON',
        'application/json; charset=utf-8',
        'Application/Json;charset=UTF-8',
      ),
    )
    .map(
      ([body, type]): Case => ({
        kind: 'JSON content type spellings',
        payload: toJson(body),
        headers: { 'content-type': type },
        expect: { kind: 'valid' },
      }),
    );
  // Whitespace padding brings the body to just under, at, or just over the limit.
  const bodySize = fc.tuple(ep.base, fc.integer({ min: -64, max: 64 })).map(([body, delta]): Case => {
    const inner = toJson(body);
    const size = BODY_LIMIT + delta;
    return {
      kind: 'body size at the limit',
      payload: inner + ' '.repeat(size - Buffer.byteLength(inner)),
      headers: json,
      expect: size > BODY_LIMIT ? { kind: 'status', status: 413, code: 'body_too_large' } : { kind: 'valid' },
    };
  });
  const oversized = fc
    .tuple(ep.base, fc.constantFrom(...fieldNames), fc.integer({ min: BODY_LIMIT + 1, max: 4 * BODY_LIMIT }))
    .map(
      ([body, field, n]): Case => ({
        kind: 'oversized body',
        payload: toJson({ ...body, [field]: 'y'.repeat(n) }),
        headers: json,
        expect: { kind: 'status', status: 413, code: 'body_too_large' },
      }),
    );
  const cases = fc.oneof(
    { arbitrary: mutateField, weight: 8 },
    { arbitrary: missing, weight: 2 },
    { arbitrary: extra, weight: 2 },
    ...messageField.map((arbitrary) => ({ arbitrary, weight: 4 })),
    { arbitrary: poison, weight: 1 },
    { arbitrary: rootNotObject, weight: 1 },
    { arbitrary: truncated, weight: 1 },
    { arbitrary: invalidUtf8, weight: 2 },
    { arbitrary: contentType, weight: 1 },
    { arbitrary: jsonSpellings, weight: 1 },
    { arbitrary: bodySize, weight: 1 },
    { arbitrary: oversized, weight: 1 },
  );
  // Generated keys can spell __proto__ too; the parser refuses those before any field is looked at.
  return cases.map((c) =>
    (c.expect.kind === 'valid' || c.expect.kind === 'invalid' || c.expect.kind === 'unknown') &&
    typeof c.payload === 'string' &&
    poisoned(c.payload)
      ? { ...c, expect: { kind: 'status', status: 400, code: 'forbidden_key' } }
      : c,
  );
}

/** Whether JSON text holds a `__proto__` key or a `constructor` object with a `prototype` key, at any depth. */
function poisoned(text: string): boolean {
  let found = false;
  try {
    JSON.parse(text, (key, value) => {
      if (
        key === '__proto__' ||
        (key === 'constructor' && isObject(value) && Object.hasOwn(value, 'prototype'))
      )
        found = true;
      return value;
    });
  } catch {
    return false;
  }
  return found;
}

interface ErrorShape {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

/** The documented error shape, exactly: {error: {message, type, param, code}} and nothing else. */
function errorShape(status: number, body: string, context: string): ErrorShape {
  let parsedBody: { error?: ErrorShape };
  try {
    parsedBody = JSON.parse(body);
  } catch {
    assert.fail(`${status} with a non-JSON body: ${body.slice(0, 200)} (${context})`);
  }
  assert.deepEqual(Object.keys(parsedBody), ['error'], context);
  const err = parsedBody.error!;
  assert.deepEqual(Object.keys(err).sort(), ['code', 'message', 'param', 'type'], context);
  assert.ok(typeof err.message === 'string' && err.message.length > 0, context);
  assert.equal(typeof err.type, 'string', context);
  assert.ok(err.param === null || typeof err.param === 'string', context);
  assert.ok(err.code === null || typeof err.code === 'string', context);
  assert.ok(!/\bat .*\.(ts|js):\d+/.test(body), `a stack trace in the response (${context})`);
  return err;
}

/** Names the context-length error must mention, by endpoint. */
function contextOk(ep: Endpoint, err: ErrorShape): boolean {
  return (
    err.code === 'context_length_exceeded' &&
    err.message.includes(ep.promptParam) &&
    ep.maxParams.some((p) => err.message.includes(p))
  );
}

function checkSuccess(
  ep: Endpoint,
  payload: string | Buffer,
  body: string,
  contentType: string,
  context: string,
) {
  if (contentType.startsWith('text/event-stream')) {
    const { events, done } = parseSse(body);
    assert.ok(done, `a valid stream ends with [DONE] (${context}): ${body.slice(-200)}`);
    for (const e of events) assert.equal(e.error, undefined, context);
    return;
  }
  const res = JSON.parse(body);
  if (ep.url === '/generate') assert.equal(typeof res.response, 'string', context);
  else if (ep.url === '/v1/completions') assert.equal(typeof res.choices[0].text, 'string', context);
  else assert.equal(typeof res.choices[0].message.content, 'string', context);
  assert.ok(payload.length > 0);
}

interface Answer {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** One POST over HTTP; the body goes as bytes, so no Content-Type is added that the case did not set. */
async function post(url: string, payload: string | Buffer, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(`${server.url}${url}`, {
    method: 'POST',
    headers,
    body: new Uint8Array(typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload),
  });
  const answer: Answer = { statusCode: res.status, headers: {}, body: await res.text() };
  res.headers.forEach((value, name) => {
    answer.headers[name] = value;
  });
  return answer;
}

async function send(ep: Endpoint, c: Case): Promise<void> {
  const res = await post(ep.url, c.payload, c.headers);
  statusCounts.set(res.statusCode, (statusCounts.get(res.statusCode) ?? 0) + 1);
  kindCounts.set(c.kind, (kindCounts.get(c.kind) ?? 0) + 1);
  const shown = typeof c.payload === 'string' ? c.payload : c.payload.toString('latin1');
  const context = `${ep.url} ${c.kind} ${JSON.stringify(c.headers)} ${shown.slice(0, 160)} → ${res.statusCode} ${res.body.slice(0, 300)}`;
  const busy = res.statusCode === 503;
  assert.ok(res.statusCode < 500 || busy, `a server error (${context})`);
  assert.equal(res.headers['x-content-type-options'], 'nosniff', context);
  assert.match(res.headers['content-security-policy'] ?? '', /frame-ancestors 'none'/, context);
  if (res.statusCode !== 200) {
    const err = errorShape(res.statusCode, res.body, context);
    if (busy) {
      // The only 5xx the contract allows: a full queue, with Retry-After.
      assert.equal(err.code, 'queue_full', context);
      assert.ok(res.headers['retry-after'], context);
      return;
    }
    assert.equal(err.type, 'invalid_request_error', context);
  }
  const e = c.expect;
  switch (e.kind) {
    case 'valid':
      if (res.statusCode === 200)
        checkSuccess(ep, c.payload, res.body, String(res.headers['content-type']), context);
      else {
        assert.equal(res.statusCode, 400, context);
        assert.ok(contextOk(ep, errorShape(400, res.body, context)), `a valid body was refused (${context})`);
      }
      return;
    case 'invalid': {
      assert.equal(res.statusCode, 400, context);
      const err = errorShape(400, res.body, context);
      if (e.field === '') {
        assert.equal(err.param, null, context);
        assert.match(err.message, /request body/, context);
        return;
      }
      const param = err.param ?? '';
      assert.ok(
        param === e.field || param.startsWith(`${e.field}.`) || param.startsWith(`${e.field}[`),
        `param ${JSON.stringify(err.param)} does not name ${e.field} (${context})`,
      );
      assert.ok(err.message.includes(param), `the message does not name ${param} (${context})`);
      return;
    }
    case 'unknown': {
      assert.equal(res.statusCode, 400, context);
      const err = errorShape(400, res.body, context);
      // A key of digits is named as an index ("[12]"), as the validator's paths spell them.
      const named = e.fields.some((f) => err.param === f || err.param === `[${f}]`);
      assert.ok(
        named,
        `param ${JSON.stringify(err.param)} names none of ${JSON.stringify(e.fields)} (${context})`,
      );
      assert.match(err.message, /Unknown field/, context);
      return;
    }
    case 'status': {
      assert.equal(res.statusCode, e.status, context);
      const err = errorShape(res.statusCode, res.body, context);
      if (e.code) assert.equal(err.code, e.code, context);
      if (e.code === 'forbidden_key') assert.match(err.message, /__proto__/, context);
      return;
    }
    case 'no-5xx':
      assert.ok([200, 400].includes(res.statusCode), context);
      return;
  }
}

/** After a batch: nothing queued or running, /health fast, memory within the bound, a normal request answered. */
async function checkHealthy(batch: string): Promise<void> {
  const metrics = await scrape(server.url);
  assert.equal(metricValue(metrics, 'tiny_llm_queue_depth'), 0, `${batch}: the queue is not empty`);
  assert.equal(
    metricValue(metrics, 'tiny_llm_in_flight_generations'),
    0,
    `${batch}: a generation still runs`,
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
  const ok = await post(
    '/v1/chat/completions',
    JSON.stringify({ messages: [{ role: 'user', content: 'still there?' }], max_tokens: 3 }),
    { 'content-type': 'application/json' },
  );
  console.log(
    `after ${batch}: /health ${health.toFixed(1)} ms, RSS ${((rss - rssStart) / MiB).toFixed(1)} MiB over the start, a normal request: ${ok.statusCode}`,
  );
  assert.ok(health < HEALTH_MS, `${batch}: /health took ${health.toFixed(1)} ms`);
  assert.ok(
    rss - rssStart < RSS_GROWTH_BOUND,
    `${batch}: RSS grew by ${((rss - rssStart) / MiB).toFixed(0)} MiB`,
  );
  assert.equal(ok.statusCode, 200, ok.body);
}

describe('bad input, generated', () => {
  for (const ep of endpoints) {
    it(`${ep.url}: ${RUNS_PER_ENDPOINT} generated requests, never a 5xx, always the error shape naming the field`, async () => {
      const out = await fc.check(
        fc.asyncProperty(caseArbitrary(ep), (c) => send(ep, c)),
        {
          numRuns: RUNS_PER_ENDPOINT,
          seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined,
        },
      );
      // fast-check's own report hides the assertion inside `cause`; show both.
      if (out.failed) {
        const cause =
          out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
        assert.fail(`seed ${out.seed}, path ${out.counterexamplePath}: ${cause}`);
      }
      await checkHealthy(`${RUNS_PER_ENDPOINT} requests to ${ep.url}`);
    });
  }

  it('afterwards: /health answers, a valid request succeeds, no generation is running or queued, every worker is up', async () => {
    const total = [...statusCounts.values()].reduce((a, b) => a + b, 0);
    const byStatus = [...statusCounts].sort(([a], [b]) => a - b).map(([s, n]) => `${s}: ${n}`);
    const byKind = [...kindCounts].sort(([, a], [, b]) => b - a).map(([k, n]) => `${k} ${n}`);
    console.log(`fuzz: ${total} requests; by status ${byStatus.join(', ')}`);
    console.log(`fuzz cases: ${byKind.join(', ')}`);
    console.log(
      `largest RSS growth over the batches: ${(peakGrowth / MiB).toFixed(1)} MiB (bound ${RSS_GROWTH_BOUND / MiB} MiB)`,
    );
    assert.ok(total >= 1000, `only ${total} requests were sent`);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const ok = await post(
      '/v1/chat/completions',
      JSON.stringify({ messages: [{ role: 'user', content: 'still there?' }], max_tokens: 3 }),
      { 'content-type': 'application/json' },
    );
    assert.equal(ok.statusCode, 200, ok.body);
    const metrics = await scrape(server.url);
    assert.equal(metricValue(metrics, 'tiny_llm_in_flight_generations'), 0);
    assert.equal(metricValue(metrics, 'tiny_llm_queue_depth'), 0);
    assert.equal(metricValue(metrics, 'tiny_llm_worker_restarts_total'), 0);
    const ready = await (await fetch(`${server.url}/ready`)).json();
    assert.deepEqual(ready.workers, { ready: 2, total: 2 });
    assert.doesNotMatch(server.output(), /"severity":"(ERROR|CRITICAL)"/, 'an error was logged');
  });
});
