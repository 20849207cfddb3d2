// Proves the model card reads /api/model defensively and maps the loss curve into its SVG box.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { curvePoints, formatCount, formatDuration, readModelInfo } from '../../web/src/model-info.js';

test('a full body is read field by field', () => {
  const info = readModelInfo({
    id: 'tiny-llm',
    config: { vocab_size: 50257, n_positions: 128, n_embd: 64, n_layer: 2, n_head: 2 },
    parameters: 3_350_000,
    training: {
      final_loss: 2.5,
      steps: 300,
      wall_time_s: 61,
      tokens_per_s: 9000,
      loss_curve: [
        [10, 3],
        [0, 5],
      ],
      preset: 'default',
    },
    defaults: { temperature: 1, top_k: 50, top_p: 0.95, max_tokens: 50 },
    system_prompt: 'Be kind.',
  });
  assert.equal(info.config?.n_positions, 128);
  assert.equal(info.parameters, 3_350_000);
  assert.deepEqual(
    info.training?.lossCurve,
    [
      [0, 5],
      [10, 3],
    ],
    'sorted by step',
  );
  assert.equal(info.training?.preset, 'default');
  assert.deepEqual(info.defaults, { temperature: 1, top_k: 50, top_p: 0.95, max_tokens: 50 });
  assert.equal(info.systemPrompt, 'Be kind.');
});

test('missing or malformed parts become null instead of throwing', () => {
  for (const body of [
    null,
    'x',
    42,
    {},
    { config: { n_layer: 'two' }, training: null, parameters: 'many' },
  ]) {
    const info = readModelInfo(body);
    assert.equal(info.config, null);
    assert.equal(info.training, null);
    assert.equal(info.parameters, null);
  }
  const bare = readModelInfo({ training: { losses: [4, 'x', 2, null, 1] } });
  assert.deepEqual(
    bare.training?.lossCurve,
    [
      [0, 4],
      [2, 2],
      [4, 1],
    ],
    'bare losses use their index as the step',
  );
  assert.equal(bare.training?.finalLoss, null);
});

test('curve points span the padded box: first step at the left, highest loss at the top', () => {
  const box = { width: 300, height: 120, pad: 10 };
  const pts = curvePoints(
    [
      [0, 5],
      [50, 4],
      [100, 1],
    ],
    box,
  )
    .split(' ')
    .map((p) => p.split(',').map(Number));
  assert.deepEqual(pts, [
    [10, 10],
    [150, 35],
    [290, 110],
  ]);
  assert.equal(curvePoints([], box), '');
  assert.equal(curvePoints([[3, 2]], box), '150.0,60.0', 'a single point sits in the middle');
});

test('counts and durations read naturally', () => {
  assert.equal(formatCount(999), '999');
  assert.equal(formatCount(3_350_000), '3.35 M');
  assert.equal(formatCount(124_439_808), '124 M');
  assert.equal(formatCount(50257), '50.3 k');
  assert.equal(formatDuration(4.25), '4.3 s');
  assert.equal(formatDuration(185), '3 min 5 s');
  assert.equal(formatDuration(3720), '1 h 2 min');
});
