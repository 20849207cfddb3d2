// Proves the `generate` and `tokenize` command-line contracts: JSON shapes, determinism and exit codes.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { fixture, readJson } from '../helpers/fixtures.js';

const multi = fixture('multi-v512');
const recipe = fixture('seed-recipe-trained');

describe('tiny-llm generate', () => {
  it('--prompt-ids on a model without tokenizer files prints ids only, equal to the greedy reference', async () => {
    const ref = readJson<{ cases: { input_ids: number[]; greedy_24: number[] }[] }>(
      join(multi, 'reference.json'),
    );
    const c = ref.cases[1];
    const r = await runCli([
      'generate',
      '--model-dir',
      multi,
      '--prompt-ids',
      c.input_ids.join(','),
      '--temperature',
      '0',
      '--max-new-tokens',
      '24',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.prompt_ids, c.input_ids);
    assert.deepEqual(out.ids, c.greedy_24);
    assert.equal('text' in out, false);
  });

  it('--prompt gives text; the same seed repeats, another seed differs', async () => {
    const args = [
      'generate',
      '--model-dir',
      recipe,
      '--prompt',
      'Hello world',
      '--max-new-tokens',
      '12',
      '--json',
    ];
    const [a, b, c] = await Promise.all([
      runCli([...args, '--seed', '7']),
      runCli([...args, '--seed', '7']),
      runCli([...args, '--seed', '8']),
    ]);
    for (const r of [a, b, c]) assert.equal(r.code, 0, r.stderr);
    const [oa, ob, oc] = [a, b, c].map((r) => JSON.parse(r.stdout));
    assert.deepEqual(oa.prompt_ids, [15496, 995]);
    assert.equal(typeof oa.text, 'string');
    assert.ok(oa.ids.length > 0 && oa.ids.length <= 12);
    assert.deepEqual(oa, ob);
    assert.notDeepEqual(oa.ids, oc.ids);
  });

  for (const [why, args, reason] of [
    ['no model dir', ['--prompt', 'x'], /--model-dir is required/],
    [
      'both prompts',
      ['--model-dir', multi, '--prompt', 'x', '--prompt-ids', '1'],
      /exactly one of --prompt or --prompt-ids/,
    ],
    ['bad top-k', ['--model-dir', multi, '--prompt-ids', '1', '--top-k=-1'], /--top-k must be >= 0/],
    [
      'bad temperature',
      ['--model-dir', multi, '--prompt-ids', '1', '--temperature', 'hot'],
      /--temperature must be a number/,
    ],
    ['bad ids', ['--model-dir', multi, '--prompt-ids', '1,x'], /--prompt-ids must be comma-separated/],
    ['id outside the vocabulary', ['--model-dir', multi, '--prompt-ids', '512'], /outside the vocabulary/],
    [
      'unknown flag',
      ['--model-dir', multi, '--prompt-ids', '1', '--frobnicate'],
      /Unknown option '--frobnicate'/,
    ],
  ] as const) {
    it(`bad arguments (${why}) print usage and the reason, exit 2`, async () => {
      const r = await runCli(['generate', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /usage: tiny-llm generate/);
      assert.match(r.stderr, reason);
    });
  }

  it('a missing model directory is a runtime error naming it, exit 1', async () => {
    const r = await runCli(['generate', '--model-dir', '/nonexistent/model', '--prompt-ids', '1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\/nonexistent\/model/);
    assert.doesNotMatch(r.stderr, /usage:/);
  });
});

describe('tiny-llm tokenize', () => {
  it('--text prints the ids; stdin takes a JSON array of strings', async () => {
    const one = await runCli(['tokenize', '--model-dir', recipe, '--text', 'Hello world']);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(JSON.parse(one.stdout), [15496, 995]);
    const many = await runCli(['tokenize', '--model-dir', recipe], {
      input: JSON.stringify(['Hello world', '', 'hi<|endoftext|>']),
    });
    assert.equal(many.code, 0, many.stderr);
    assert.deepEqual(JSON.parse(many.stdout), [[15496, 995], [], [5303, 50256]]);
  });

  it('stdin that is not a JSON array of strings exits 2 naming the problem', async () => {
    const r = await runCli(['tokenize', '--model-dir', recipe], { input: '["ok", 3]' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /item 1 is number/);
  });

  it('a model directory without tokenizer files exits 1 and says so', async () => {
    const r = await runCli(['tokenize', '--model-dir', multi, '--text', 'x']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no tokenizer files/);
  });
});
