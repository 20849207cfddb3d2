// The pool's default batch per model: batching where layers' weights are shared, one at a time where the step is the LM head.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BATCH_MIN_LAYER_PARAMS, DEFAULT_BATCH, defaultBatch } from '../../src/server/workers/kv-budget.js';

describe('defaultBatch', () => {
  it('batches GPT-2 small and the default model, not the original 16-wide one-layer configuration', () => {
    assert.equal(defaultBatch({ nLayer: 12, nEmbd: 768 }), DEFAULT_BATCH, 'GPT-2 small');
    assert.equal(defaultBatch({ nLayer: 2, nEmbd: 64 }), DEFAULT_BATCH, 'the default preset');
    assert.equal(defaultBatch({ nLayer: 1, nEmbd: 16 }), 1, 'the seed preset');
  });

  it('turns on exactly at BATCH_MIN_LAYER_PARAMS layer parameters (12 · layers · n_embd²)', () => {
    // 12 · 1 · 52² = 32 448 < 32 768 ≤ 12 · 1 · 53² = 33 708
    assert.ok(12 * 52 * 52 < BATCH_MIN_LAYER_PARAMS && 12 * 53 * 53 >= BATCH_MIN_LAYER_PARAMS);
    assert.equal(defaultBatch({ nLayer: 1, nEmbd: 52 }), 1);
    assert.equal(defaultBatch({ nLayer: 1, nEmbd: 53 }), DEFAULT_BATCH);
  });
});
