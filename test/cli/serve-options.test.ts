// Proves `serve` and `start` take the same options from one definition: the same flags in their usage, and the same
// checks (start checks them before it would train a model).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
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
