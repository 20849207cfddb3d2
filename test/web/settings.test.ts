// Proves the settings check accepts every in-range value and names the field of the first bad one.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_SEED, readSettings } from '../../web/src/settings.js';

const limits = { maxTokens: 128, vocabSize: 50257 };
const good = { temperature: '0.7', topK: '40', topP: '0.9', maxTokens: '128', seed: '' };

test('valid values become numbers; an empty seed means random (null)', () => {
  assert.deepEqual(readSettings(good, limits), {
    ok: true,
    settings: { temperature: 0.7, topK: 40, topP: 0.9, maxTokens: 128, seed: null },
  });
  const seeded = readSettings({ ...good, seed: ' 42 ', temperature: '0', topK: '0', topP: '1' }, limits);
  assert.deepEqual(seeded, {
    ok: true,
    settings: { temperature: 0, topK: 0, topP: 1, maxTokens: 128, seed: 42 },
  });
});

test('out-of-range or malformed values name the field and its rule', () => {
  const cases: [Partial<typeof good>, string, RegExp][] = [
    [{ temperature: '2.5' }, 'temperature', /Temperature must be a number from 0 to 2/],
    [{ temperature: '' }, 'temperature', /Temperature/],
    [{ topK: '1.5' }, 'topK', /Top-k must be a whole number from 0 \(off\) to 50257/],
    [{ topK: '-1' }, 'topK', /Top-k/],
    [{ topP: '0' }, 'topP', /Top-p must be greater than 0 and at most 1/],
    [{ topP: '1.01' }, 'topP', /Top-p/],
    [{ maxTokens: '129' }, 'maxTokens', /Max tokens must be a whole number from 1 to 128/],
    [{ maxTokens: '0' }, 'maxTokens', /Max tokens/],
    [{ seed: 'abc' }, 'seed', /Seed must be empty \(random\) or a whole number/],
    [{ seed: String(MAX_SEED + 1) }, 'seed', /Seed/],
    [{ seed: '-3' }, 'seed', /Seed/],
  ];
  for (const [change, field, message] of cases) {
    const result = readSettings({ ...good, ...change }, limits);
    assert.equal(result.ok, false, JSON.stringify(change));
    if (!result.ok) {
      assert.equal(result.field, field);
      assert.match(result.message, message);
    }
  }
});
