// The trainer's parts: corpus splitting, window and padded batches (the original's recipe), GPT-2 init
// statistics, determinism, progress lines and the loss-curve SVG.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initStd } from '../../src/engine/init.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { epochBatches, lineStarts, paddedBatch, windowBatch } from '../../src/train/batches.js';
import { documentStream, lineSamples, splitBlocks, splitLines } from '../../src/train/corpus.js';
import { DEFAULT_PRESET, SEED_PRESET } from '../../src/train/presets.js';
import { progressLine, progressReporter } from '../../src/train/progress.js';
import { lossCurveSvg } from '../../src/train/report.js';
import { initialParams, train } from '../../src/train/trainer.js';

/** A stand-in tokenizer: one id per character code (plus 1), EOS = 0. */
const charTokenizer = { encode: (s: string) => Array.from(s, (c) => c.charCodeAt(0) + 1), eosTokenId: 0 };

describe('corpus', () => {
  it('splits blocks on blank lines (whitespace-only too) and lines on line breaks', () => {
    assert.deepEqual(splitBlocks('a\nb\n\n  \t\nc\r\n\r\nd\n'), ['a\nb', 'c', 'd']);
    assert.deepEqual(splitLines('a\n\n b \r\nc'), ['a', ' b ', 'c']);
  });

  it('documents end with EOS; dialogue blocks get the system prompt in front', () => {
    const s = documentStream('fact\n\nUser: q\nBot: a', charTokenizer, 'S');
    const text = Array.from(s, (id) => (id === 0 ? '|' : String.fromCharCode(id - 1))).join('');
    assert.equal(text, 'fact|S\nUser: q\nBot: a|');
  });

  it('seed samples: one per non-empty line, truncated', () => {
    assert.deepEqual(lineSamples('abcdef\n\nxy\n', charTokenizer, 3), [
      [98, 99, 100],
      [121, 122],
    ]);
  });
});

describe('batches', () => {
  it('padded batch: EOS padding to the longest, labels = inputs shifted with the padding counted', () => {
    const b = paddedBatch(
      [
        [5, 6, 7],
        [8, 9],
      ],
      0,
    );
    assert.deepEqual(Array.from(b.inputs), [5, 6, 7, 8, 9, 0]);
    assert.deepEqual(Array.from(b.targets), [6, 7, -1, 9, 0, -1]);
    assert.equal(b.tokens, 4);
  });

  it('epochs visit every sample once per epoch in a seeded order', () => {
    const samples = Array.from({ length: 5 }, (_, i) => [i + 1]);
    const seen = [...epochBatches(samples, 2, 2, 0, new Rng(1))].map((b) => Array.from(b.inputs));
    assert.equal(seen.length, 6);
    const firstEpoch = seen.slice(0, 3).flat().sort();
    assert.deepEqual(firstEpoch, [1, 2, 3, 4, 5]);
    const again = [...epochBatches(samples, 2, 2, 0, new Rng(1))].map((b) => Array.from(b.inputs));
    assert.deepEqual(again, seen);
  });

  it('windows: targets are inputs shifted by one; line-start windows begin after a newline or EOS', () => {
    const stream = Int32Array.from([1, 2, 9, 3, 4, 0, 5, 9, 6, 7, 8, 2]);
    const starts = lineStarts(stream, 3, 9, 0);
    assert.deepEqual(Array.from(starts), [0, 3, 6, 8]);
    const rng = new Rng(3);
    for (let k = 0; k < 20; k++) {
      const b = windowBatch(stream, 2, 3, rng, starts);
      for (let i = 0; i < 2; i++) {
        const start = stream.indexOf(b.inputs[i * 3]);
        assert.ok(starts.includes(start), `window starts at ${start}`);
        for (let t = 0; t < 3; t++) assert.equal(b.targets[i * 3 + t], stream[start + t + 1]);
      }
    }
  });
});

describe('init and training', () => {
  it('GPT-2 init: N(0, 0.02²), residual projections 0.02/√(2L), LayerNorm 1/0, biases 0', () => {
    const config = { ...DEFAULT_PRESET.config, nEmbd: 32, nLayer: 3, nHead: 4 };
    const params = initialParams(config, 9);
    for (const t of parameterLayout(config).tensors) {
      const v = params.subarray(t.offset, t.offset + t.size);
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
      const want = initStd(t.hfName, config.nLayer);
      if (want === null) {
        const constant = t.hfName.includes('.ln_') && t.hfName.endsWith('weight') ? 1 : 0;
        assert.ok(
          v.every((x) => x === constant),
          `${t.hfName} should be ${constant}`,
        );
      } else {
        assert.ok(Math.abs(std - want) < want * 0.1, `${t.hfName}: std ${std}, want ${want}`);
      }
    }
    assert.equal(initStd('transformer.h.0.mlp.c_proj.weight', 3), 0.02 / Math.sqrt(6));
    assert.deepEqual(initialParams(config, 9), params);
  });

  it('training is deterministic for a seed and lowers the loss (seed recipe with dropout, and windows)', () => {
    const text = Array.from({ length: 12 }, (_, i) => `line ${i % 3} says ${'ab'.repeat(i % 4)}`).join('\n');
    const config = { ...SEED_PRESET.config, vocabSize: 130, nPositions: 64, bosTokenId: 0, eosTokenId: 0 };
    const hyper = { ...SEED_PRESET.hyper, epochs: 6, lr: 1e-2 };
    const run = () => train({ config, hyper, seed: 4, text, systemPrompt: null, tokenizer: charTokenizer });
    const a = run();
    assert.equal(a.steps, 36);
    assert.deepEqual(run().params, a.params);
    const first = a.losses.slice(0, 6).reduce((x, y) => x + y) / 6;
    const last = a.losses.slice(-6).reduce((x, y) => x + y) / 6;
    console.log(`seed recipe on a toy corpus: loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
    assert.ok(last < first - 0.5);
    const w = train({
      config,
      hyper: { ...DEFAULT_PRESET.hyper, steps: 30, seqLen: 16, batchSize: 4, warmup: 3 },
      seed: 4,
      text,
      systemPrompt: null,
      tokenizer: charTokenizer,
    });
    assert.equal(w.trainingVocabSize, new Set(Array.from(text, (c) => c.charCodeAt(0) + 1)).size + 1);
    assert.ok(w.losses[29] < w.losses[0]);
  });
});

describe('compact training vocabulary', () => {
  it('training a compact model over the corpus tokens gives the full-size model with a restricted head', () => {
    const text = Array.from({ length: 10 }, (_, i) => `row ${i % 4}: ${'xyz'.slice(0, 1 + (i % 3))}`).join(
      '\n',
    );
    const config = { ...DEFAULT_PRESET.config, vocabSize: 130, nEmbd: 16, nHead: 2, nPositions: 32 };
    const config0 = { ...config, bosTokenId: 0, eosTokenId: 0 };
    const hyper = {
      ...DEFAULT_PRESET.hyper,
      steps: 12,
      seqLen: 12,
      batchSize: 3,
      warmup: 2,
      weightDecay: 0.1,
    };
    const run = (compactVocab: boolean) =>
      train({
        config: config0,
        hyper,
        seed: 5,
        text,
        systemPrompt: null,
        tokenizer: charTokenizer,
        compactVocab,
      });
    const compact = run(true);
    const full = run(false);
    const lossDiff = Math.max(...compact.losses.map((l, i) => Math.abs(l - full.losses[i])));
    const used = new Set([0, ...Array.from(text, (c) => c.charCodeAt(0) + 1)]);
    const C = config.nEmbd;
    const init = initialParams(config0, 5);
    let trained = 0;
    let outside = 0;
    let decayed = 0;
    for (let i = 0; i < full.params.length; i++) {
      const d = Math.abs(compact.params[i] - full.params[i]);
      const row = Math.floor(i / C);
      // Rows outside the corpus only decay: once at the end here, step by step (rounded each time) there.
      if (i < config.vocabSize * C && !used.has(row)) {
        outside = Math.max(outside, d / Math.abs(full.params[i]));
        if (Math.abs(compact.params[i]) < Math.abs(init[i])) decayed++;
      } else trained = Math.max(trained, d);
    }
    console.log(
      `compact vs full: losses ${lossDiff}, trained params ${trained}, outside rows (relative) ${outside}`,
    );
    assert.equal(compact.trainingVocabSize, used.size);
    assert.ok(lossDiff <= 1e-6, `loss difference ${lossDiff}`);
    assert.ok(trained <= 1e-6, `parameter difference ${trained}`);
    assert.equal(
      decayed,
      (config.vocabSize - used.size) * C,
      'every outside-row weight shrinks by the decay',
    );
    assert.ok(outside <= 1e-6, `outside-row relative difference ${outside}`);
  });
});

describe('data-parallel training', () => {
  it('two replicas give the single-thread losses (float tolerance) and the same bytes for the same seed', () => {
    const text = Array.from(
      { length: 14 },
      (_, i) => `item ${i % 5} is ${'pqrs'.slice(0, 1 + (i % 4))}`,
    ).join('\n');
    const config = { ...DEFAULT_PRESET.config, vocabSize: 130, nEmbd: 16, nHead: 2, nPositions: 32 };
    const config0 = { ...config, bosTokenId: 0, eosTokenId: 0 };
    const hyper = { ...DEFAULT_PRESET.hyper, steps: 15, seqLen: 12, batchSize: 5, warmup: 2 };
    const run = (replicas: number) =>
      train({
        config: config0,
        hyper: { ...hyper, replicas },
        seed: 8,
        text,
        systemPrompt: null,
        tokenizer: charTokenizer,
      });
    const one = run(1);
    const two = run(2);
    const lossRel = Math.max(...one.losses.map((l, i) => Math.abs(l - two.losses[i]) / l));
    let paramDiff = 0;
    for (let i = 0; i < one.params.length; i++)
      paramDiff = Math.max(paramDiff, Math.abs(one.params[i] - two.params[i]));
    console.log(
      `1 vs 2 replicas over 15 steps: largest loss relative difference ${lossRel}, parameter ${paramDiff}`,
    );
    assert.ok(lossRel <= 1e-5, `loss relative difference ${lossRel}`);
    assert.ok(paramDiff <= 1e-4, `parameter difference ${paramDiff}`);
    assert.ok(!(two.params.buffer instanceof SharedArrayBuffer), 'the result is a plain buffer');
    assert.deepEqual(run(2).params, two.params, 'same seed, two replicas: different parameters');
    // The full-size model with a restricted head (no compact copy) runs on two replicas as well.
    const full = train({
      config: config0,
      hyper: { ...hyper, replicas: 2 },
      seed: 8,
      text,
      systemPrompt: null,
      tokenizer: charTokenizer,
      compactVocab: false,
    });
    const fullRel = Math.max(...full.losses.map((l, i) => Math.abs(l - two.losses[i]) / l));
    console.log(`two replicas, full-size vs compact model: largest loss relative difference ${fullRel}`);
    assert.ok(fullRel <= 1e-5, `loss relative difference ${fullRel}`);
  });
});

describe('progress and report', () => {
  const p = { step: 5, totalSteps: 10, loss: 1.23456, lr: 1e-3, tokensPerS: 1234.4, elapsedS: 65, etaS: 65 };

  it('progress: a redrawn bar on a TTY, plain lines otherwise', () => {
    assert.equal(progressLine(p, false), 'step 5/10  loss 1.2346  1234 tok/s  elapsed 1m05s  ETA 1m05s');
    const tty: string[] = [];
    progressReporter({ isTTY: true, write: (s: string) => tty.push(s) }, { intervalMs: 0 })(p);
    assert.match(tty[0], /^\r\[#{12}\.{12}\] step 5\/10/);
    const plain: string[] = [];
    const report = progressReporter({ write: (s: string) => plain.push(s) }, { lines: 2 });
    for (let s = 1; s <= 10; s++) report({ ...p, step: s });
    assert.deepEqual(
      plain.map((l) => l.split('  ')[0]),
      ['step 1/10', 'step 5/10', 'step 10/10'],
    );
  });

  it('loss-curve SVG: one polyline point per step, axes labelled, eval line marked', () => {
    const losses = [4, 3, 2.5, 2, 1.5];
    const svg = lossCurveSvg(losses, { title: 'a < b', evalLoss: 1.7 });
    const points = /points="([^"]+)"/.exec(svg)![1].split(' ');
    assert.equal(points.length, 5);
    const ys = points.map((pt) => Number(pt.split(',')[1]));
    assert.deepEqual(
      [...ys].sort((x, y) => x - y),
      ys,
      'y grows downwards as the loss falls',
    );
    assert.match(svg, />step</);
    assert.match(svg, /loss \(nats\/token\)/);
    assert.match(svg, /a &lt; b/);
    assert.match(svg, /eval 1\.700/);
  });
});
