// Proves the build-time request validators: recorded from ajv, loaded from their CommonJS module, they answer
// every request exactly as ajv's own do, are keyed by schema and options, and a missing one falls back to ajv.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { type AppOptions, buildApp } from '../../src/server/app.js';
import {
  type PrecompiledValidators,
  validatorKey,
  validatorsModule,
} from '../../src/server/startup/validators.js';
import { repoRoot } from '../helpers/fixtures.js';

// Inside the repository: the generated code requires ajv's runtime helpers from node_modules.
mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
const dir = mkdtempSync(join(repoRoot, '.tmp', 'validators-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** An app whose model never loads: validation answers 400 before any generation, valid requests get 503. */
async function app(validators?: AppOptions['validators']): Promise<FastifyInstance> {
  const noModel = Promise.reject(new Error('no model in this test'));
  noModel.catch(() => {});
  const built = await buildApp({ model: noModel, systemPrompt: 'x', workers: 1, logger: false, validators });
  await built.ready();
  return built;
}

const requests: Array<[string, unknown]> = [
  ['/generate', { prompt: 'hi' }],
  ['/generate', { prompt: '' }],
  ['/generate', { prompt: 5 }],
  ['/generate', { prompt: 'hi', max_new_tokens: 0 }],
  ['/generate', { prompt: 'hi', temperature: '1' }],
  ['/generate', { prompt: 'hi', extra: true }],
  ['/generate', []],
  ['/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }],
  ['/v1/chat/completions', { messages: [] }],
  ['/v1/chat/completions', { messages: [{ role: 'robot', content: 'hi' }] }],
  ['/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], stream: 'yes' }],
  ['/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], top_p: 2 }],
  ['/v1/chat/completions', { model: 7 }],
];

async function answers(target: FastifyInstance): Promise<string[]> {
  const out: string[] = [];
  for (const [url, payload] of requests) {
    const res = await target.inject({ method: 'POST', url, payload: payload as object });
    out.push(`${url} ${res.statusCode} ${res.body}`);
  }
  return out;
}

describe('build-time request validators', () => {
  it('recorded, written and loaded back, they answer every request as ajv does, without ajv compiling', async () => {
    const recorded = new Map<string, string>();
    const recording = await app({ record: (key, code) => recorded.set(key, code) });
    const expected = await answers(recording);
    await recording.close();
    assert.ok(recorded.size >= 2, `only ${recorded.size} validators recorded`);
    assert.ok(expected.some((a) => / 400 /.test(a)) && expected.some((a) => / 503 /.test(a)));

    const file = join(dir, 'validators.cjs');
    writeFileSync(file, validatorsModule(recorded));
    const loaded = createRequire(file)(file) as Record<string, unknown>;
    // Count the look-ups that found a validator: every schema'd route part must find one.
    let found = 0;
    const counting = new Proxy(loaded, {
      get(target, key) {
        const value = Reflect.get(target, key);
        if (typeof value === 'function') found++;
        return value;
      },
    }) as PrecompiledValidators;
    const precompiled = await app({ use: counting });
    assert.equal(found, recorded.size);
    assert.deepEqual(await answers(precompiled), expected);
    await precompiled.close();

    // Without them (or with none that fit), ajv compiles them as before: the same answers.
    const plain = await app();
    assert.deepEqual(await answers(plain), expected);
    await plain.close();
    const none = await app({ use: {} });
    assert.deepEqual(await answers(none), expected);
    await none.close();
  });

  it('a validator is keyed by its route part, schema and ajv options', () => {
    const route = { method: 'POST', url: '/generate', httpPart: 'body', schema: { type: 'object' } };
    const key = validatorKey(route, { coerceTypes: false });
    assert.equal(validatorKey({ ...route }, { coerceTypes: false }), key);
    assert.notEqual(validatorKey({ ...route, schema: { type: 'array' } }, { coerceTypes: false }), key);
    assert.notEqual(validatorKey(route, { coerceTypes: true }), key);
    assert.notEqual(validatorKey({ ...route, url: '/other' }, { coerceTypes: false }), key);
    assert.notEqual(validatorKey({ ...route, httpPart: 'querystring' }, { coerceTypes: false }), key);
  });
});
