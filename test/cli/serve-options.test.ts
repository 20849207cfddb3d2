// Proves `serve` and `start` take the same options from one definition: the same flags in their usage, and the same
// checks (start checks them before it would train a model).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { UsageError } from '../../src/cli/command.js';
import { parseServeArgs } from '../../src/cli/serve-options.js';
import { runCli } from '../helpers/cli.js';
import { repoRoot } from '../helpers/fixtures.js';

/** The --flags a usage text lists. */
function flags(usage: string): string[] {
  return [...new Set([...usage.matchAll(/^\s+(--[a-z-]+)/gm)].map((m) => m[1]))].sort();
}

describe('serve and start options', () => {
  it('both list the same flags', async () => {
    const serve = await runCli(['serve', '--help']);
    const start = await runCli(['start', '--help']);
    assert.equal(serve.code, 0);
    assert.equal(start.code, 0);
    console.log(`serve: ${flags(serve.stdout).join(' ')}\nstart: ${flags(start.stdout).join(' ')}`);
    assert.deepEqual(flags(start.stdout), flags(serve.stdout));
    assert.ok(flags(serve.stdout).includes('--queue-limit'));
    assert.ok(flags(serve.stdout).includes('--trust-proxy-hops'));
  });

  it('start checks --queue-limit and --rate-limit as serve does, exit 2 naming the flag, before any model is made', async () => {
    const missing = join(repoRoot, '.tmp', 'no-model-here');
    for (const [flag, value, reason] of [
      ['--queue-limit', 'many', /--queue-limit must be a number, got "many"/],
      ['--rate-limit', '-1', /--rate-limit must be >= 0, got -1/],
      ['--workers', '0', /--workers must be >= 1, got 0/],
      ['--trust-proxy-hops', '1.5', /--trust-proxy-hops must be an integer, got "1.5"/],
      ['--trust-proxy-hops', '11', /--trust-proxy-hops must be <= 10, got 11/],
    ] as const) {
      for (const command of ['serve', 'start']) {
        const r = await runCli([command, '--model-dir', missing, `${flag}=${value}`]);
        assert.equal(r.code, 2, `${command} ${flag} ${value}: ${r.stderr}`);
        assert.match(r.stderr, reason, `${command} ${flag} ${value}`);
        assert.doesNotMatch(r.stderr, /creating and training/);
      }
    }
  });
});

describe('where the model comes from: --model-dir, --model-uri, MODEL_URI, MODEL_DIR', () => {
  /** parseServeArgs with only these model variables set (the others as they are). */
  function parse(argv: string[], env: { MODEL_URI?: string; MODEL_DIR?: string }) {
    const saved = { MODEL_URI: process.env.MODEL_URI, MODEL_DIR: process.env.MODEL_DIR };
    for (const key of ['MODEL_URI', 'MODEL_DIR'] as const) {
      if (env[key] === undefined) delete process.env[key];
      else process.env[key] = env[key];
    }
    try {
      const o = parseServeArgs(argv);
      return { modelDir: o.modelDir, modelUri: o.modelUri };
    } finally {
      for (const key of ['MODEL_URI', 'MODEL_DIR'] as const) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  }

  it('flags first, then MODEL_URI, then MODEL_DIR (the image sets it), then ./model', () => {
    const uri = 'gs://test-models/gpt2/v1';
    assert.deepEqual(parse(['--model-uri', uri], { MODEL_DIR: '/app/model' }), {
      modelDir: null,
      modelUri: uri,
    });
    assert.deepEqual(parse([], { MODEL_URI: uri, MODEL_DIR: '/app/model' }), {
      modelDir: null,
      modelUri: uri,
    });
    assert.deepEqual(parse(['--model-dir', '/srv/m'], { MODEL_URI: uri }), {
      modelDir: '/srv/m',
      modelUri: null,
    });
    assert.deepEqual(parse([], { MODEL_DIR: '/app/model' }), { modelDir: '/app/model', modelUri: null });
    assert.deepEqual(parse([], { MODEL_URI: '' }), {
      modelDir: join(process.cwd(), 'model'),
      modelUri: null,
    });
  });

  it('refuses both flags at once, and anything but a gs://BUCKET/PREFIX, naming where it came from', () => {
    const refused: [string[], { MODEL_URI?: string }, RegExp][] = [
      [['--model-dir', 'm', '--model-uri', 'gs://b-1/p'], {}, /--model-dir and --model-uri name two models/],
      [
        ['--model-uri', 'https://storage.googleapis.com/b/p'],
        {},
        /--model-uri must be a gs:\/\/BUCKET\/PREFIX URI/,
      ],
      [['--model-uri', 'gs://B/p'], {}, /--model-uri: gs:\/\/B\/p: not a gs:\/\/BUCKET\[\/PREFIX\] URI/],
      [[], { MODEL_URI: 'gs://b-1/../x' }, /MODEL_URI: gs:\/\/b-1\/\.\.\/x: the prefix may not hold/],
      [[], { MODEL_URI: '/local/dir' }, /MODEL_URI must be a gs:\/\/BUCKET\/PREFIX URI, got "\/local\/dir"/],
    ];
    for (const [argv, env, reason] of refused) {
      assert.throws(
        () => parse(argv, env),
        (err: Error) => err instanceof UsageError && reason.test(err.message),
        `${argv.join(' ')} ${JSON.stringify(env)}`,
      );
    }
  });

  it('the CLI turns a bad --model-uri into exit 2 with the usage, before anything starts', async () => {
    const r = await runCli(['serve', '--model-uri', 'http://example.invalid/model']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /tiny-llm serve: --model-uri must be a gs:\/\/BUCKET\/PREFIX URI/);
    assert.match(r.stderr, /--model-uri gs:\/\/BUCKET\/PREFIX/, 'the usage lists the flag');
  });

  it('the model file, quantisation and batching flags: parsed from flags and environment, bad values refused naming the flag', () => {
    const saved = { ...process.env };
    try {
      for (const k of ['QUANTIZE', 'MAX_BATCH', 'KV_CACHE_MIB', 'MODEL_DIR', 'MODEL_URI'])
        delete process.env[k];
      const plain = parseServeArgs([]);
      assert.equal(plain.quantize, undefined);
      assert.equal(plain.batch, undefined, 'no --max-batch: the pool picks the default for the model');
      assert.equal(plain.kvCacheBytes, undefined);
      const given = parseServeArgs([
        '--model-file',
        'm.gguf',
        '--quantize',
        'q8_0',
        '--max-batch',
        '3',
        '--kv-cache-mib',
        '1.5',
      ]);
      assert.equal(given.modelDir, join(process.cwd(), 'm.gguf'));
      assert.deepEqual([given.quantize, given.batch, given.kvCacheBytes], ['q8_0', 3, 1.5 * 2 ** 20]);
      process.env.QUANTIZE = 'q8_0';
      process.env.MAX_BATCH = '1';
      process.env.KV_CACHE_MIB = '64';
      const env = parseServeArgs([]);
      assert.deepEqual([env.quantize, env.batch, env.kvCacheBytes], ['q8_0', 1, 64 * 2 ** 20]);
      for (const [args, reason] of [
        [['--model-file', 'm.gguf', '--model-dir', 'd'], /--model-dir or --model-file, not both/],
        [['--model-file', 'model.bin'], /--model-file must name a \.gguf file/],
        [['--quantize', 'q4_0'], /--quantize takes q8_0, got "q4_0"/],
        [['--max-batch', '0'], /--max-batch must be >= 1/],
        [['--kv-cache-mib', 'lots'], /--kv-cache-mib must be a number/],
      ] as const) {
        assert.throws(
          () => parseServeArgs([...args]),
          (e: Error) => e instanceof UsageError && reason.test(e.message),
        );
      }
    } finally {
      process.env = saved;
    }
  });
});
