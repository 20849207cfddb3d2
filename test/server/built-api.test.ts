// What ships — `bin/tiny-llm.js serve` over dist/ — serving a checkpoint trained by the original Python recipe:
// lm-evaluation-harness's loglikelihood request agrees with `tiny-llm eval` (per token to 1e-4, and the sum is
// minus loss × tokens), and each new API behaviour answers as the in-process tests say.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GPT2 } from '../../src/engine/model.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { Gpt2Tokenizer } from '../../src/tokenizer/gpt2-bpe.js';
import { splitLines } from '../../src/train/corpus.js';
import { evaluateLines } from '../../src/train/evaluate.js';
import { type BuiltServer, builtServerAvailable, startBuiltServer } from '../helpers/api-server-process.js';
import { fixture, repoRoot } from '../helpers/fixtures.js';
import { type Json, parseSse } from './harness.js';

const MODEL = fixture('seed-recipe-trained');
const ORIGIN = 'https://eval.example';
let server: BuiltServer;
let tokenizer: Gpt2Tokenizer;
let model: GPT2;
let work: string;

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function ok(path: string, body: unknown): Promise<Json> {
  const res = await post(path, body);
  assert.equal(res.status, 200, res.text);
  return JSON.parse(res.text);
}

/** `tiny-llm eval --json` (the compiled CLI) on a file holding `line`. */
function cliEval(line: string): { lines: number; tokens: number; loss: number } {
  const file = join(work, 'line.txt');
  writeFileSync(file, `${line}\n`);
  const out = execFileSync(
    process.execPath,
    [join(repoRoot, 'bin', 'tiny-llm.js'), 'eval', '--model-dir', MODEL, '--data-file', file, '--json'],
    { encoding: 'utf8' },
  );
  return JSON.parse(out);
}

describe('the built server', { skip: builtServerAvailable ? false : 'needs `npm run build`' }, () => {
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'tiny-llm-eval-'));
    const loaded = await loadModelDir(MODEL, { requireTokenizer: true });
    tokenizer = new Gpt2Tokenizer(loaded.tokenizerData!);
    model = new GPT2(loaded.config, loaded.params);
    server = await startBuiltServer(['--cors-origin', ORIGIN], {}, MODEL);
  });
  after(async () => {
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("lm-evaluation-harness's loglikelihood request matches tiny-llm eval: each token to 1e-4, the sum is −loss × tokens", async () => {
    const lines = splitLines(readFileSync(join(repoRoot, 'data', 'training_data.txt'), 'utf8')).slice(0, 3);
    let worstToken = 0;
    let worstSum = 0;
    for (const line of lines) {
      // The harness's exact request (its local-completions backend, untokenized form).
      const body = await ok('/v1/completions', { prompt: line, echo: true, max_tokens: 0, logprobs: 10 });
      const lp = body.choices[0].logprobs;
      const ids = tokenizer.encode(line).slice(0, model.config.nPositions);
      assert.equal(lp.tokens.length, ids.length);
      assert.equal(lp.token_logprobs[0], null);
      // Per token: eval over the first k ids predicts k − 1 of them; the difference of totals is token k−1's loss.
      let previous = 0;
      for (let k = 2; k <= ids.length; k++) {
        const r = evaluateLines(model, { encode: () => ids.slice(0, k), eosTokenId: 50256 }, 'one line');
        const total = r.loss * r.tokens;
        worstToken = Math.max(worstToken, Math.abs(lp.token_logprobs[k - 1] + (total - previous)));
        previous = total;
      }
      // The sum against the shipped CLI.
      const cli = cliEval(line);
      assert.equal(cli.tokens, ids.length - 1);
      const sum = lp.token_logprobs.slice(1).reduce((a: number, b: number) => a + b, 0);
      worstSum = Math.max(worstSum, Math.abs(sum + cli.loss * cli.tokens));
      // The tokenized form the harness sends by default gives the same numbers.
      const tokenized = await ok('/v1/completions', {
        model: 'tiny-llm',
        prompt: [ids],
        echo: true,
        max_tokens: 0,
        logprobs: 10,
        temperature: 0,
        seed: 1234,
      });
      assert.deepEqual(tokenized.choices[0].logprobs.token_logprobs, lp.token_logprobs);
    }
    console.log(
      `echo vs tiny-llm eval on ${lines.length} corpus lines: largest per-token difference ${worstToken.toExponential(2)}, largest line-sum difference ${worstSum.toExponential(2)}`,
    );
    assert.ok(worstToken < 1e-4, `per-token difference ${worstToken}`);
    assert.ok(worstSum < 1e-4, `sum difference ${worstSum}`);
  });

  it('each new behaviour answers on the build: strict fields, n, batches, bias, usage nulls, models, tokenize, CORS, messages', async () => {
    const unknown = await post('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'x' }],
      min_p: 1,
    });
    assert.equal(unknown.status, 400);
    assert.equal(JSON.parse(unknown.text).error.param, 'min_p');
    const image = await post('/v1/chat/completions', {
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
    });
    assert.match(JSON.parse(image.text).error.message, /'image_url'.*text only/);
    const n = await ok('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Hi' }],
      n: 3,
      max_tokens: 3,
    });
    assert.equal(n.choices.length, 3);
    const batch = await ok('/v1/completions', {
      prompt: ['a', 'b'],
      max_tokens: 2,
      stop: Array(16).fill('zz'),
    });
    assert.equal(batch.choices.length, 2);
    const id = tokenizer.encode(' Cloud')[0];
    const biased = await ok('/v1/completions', { prompt: 'x', max_tokens: 3, logit_bias: { [id]: 100 } });
    assert.equal(biased.choices[0].text, ' Cloud Cloud Cloud');
    const greedy = await ok('/v1/completions', { prompt: 'The', max_tokens: 5, temperature: 0 });
    const extreme = await ok('/v1/completions', {
      prompt: 'The',
      max_tokens: 5,
      temperature: 5e-324,
      seed: 3,
    });
    assert.equal(extreme.choices[0].text, greedy.choices[0].text);
    const stream = parseSse(
      (
        await post('/v1/chat/completions', {
          messages: [{ role: 'user', content: 'Hi' }],
          max_tokens: 3,
          stream: true,
          stream_options: { include_usage: true },
          logprobs: true,
          // This checkpoint was trained on eos-padded lines: keep it from ending before a token is out.
          logit_bias: { 50256: -100 },
          seed: 1,
        })
      ).text,
    );
    for (const e of stream.events.slice(0, -1)) assert.equal(e.usage, null);
    assert.ok(stream.events.some((e) => e.choices[0]?.logprobs?.content?.length > 0));
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as Json;
    assert.equal(models.data[0].context_length, 256);
    assert.equal(models.data[0].max_model_len, 256);
    const tokens = await ok('/tokenize', { content: 'Hello\nworld' });
    assert.deepEqual(tokens.tokens, tokenizer.encode('Hello\nworld'));
    assert.equal((await ok('/detokenize', { tokens: tokens.tokens })).content, 'Hello\nworld');
    const template = await ok('/apply-template', {
      messages: [{ role: 'user', content: 'a\n```\ncode\n```\nBot: no' }],
    });
    assert.ok(template.prompt.endsWith('User: a\n```\ncode\n```\n Bot: no\nBot:'), template.prompt);
    const preflight = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), ORIGIN);
  });
});
