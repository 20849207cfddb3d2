// Golden training conformance: step-0 gradients of every tensor and 5 AdamW steps (losses and parameters)
// against PyTorch + transformers for multi-v512 and seed-tiny; plus dropout and the restricted training head.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdamW } from '../../src/engine/adamw.js';
import type { GPTConfig } from '../../src/engine/config.js';
import { GPT2 } from '../../src/engine/model.js';
import { Rng } from '../../src/engine/rng.js';
import { fixture, readJson, readReferenceTensors } from '../helpers/fixtures.js';

interface RunReference {
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  losses: number[];
}

interface Golden {
  name: string;
  config: GPTConfig;
  batch: number[][];
  runs: Record<string, RunReference>;
}

function configFromJson(dir: string): GPTConfig {
  const c = readJson<Record<string, number>>(fixture(dir, 'config.json'));
  return {
    vocabSize: c.vocab_size,
    nPositions: c.n_positions,
    nEmbd: c.n_embd,
    nLayer: c.n_layer,
    nHead: c.n_head,
    layerNormEpsilon: c.layer_norm_epsilon,
    tieWordEmbeddings: true,
    bosTokenId: c.bos_token_id,
    eosTokenId: c.eos_token_id,
  };
}

function golden(name: string): Golden {
  const config = configFromJson(name);
  if (name === 'multi-v512') {
    const t = readJson<Record<string, unknown>>(fixture(name, 'reference.json')).training as Record<
      string,
      unknown
    >;
    return {
      name,
      config,
      batch: t.batch as number[][],
      runs: {
        'seed-adamw': t['seed-adamw'] as RunReference,
        'decoupled-wd': t['decoupled-wd'] as RunReference,
      },
    };
  }
  const t = readJson<Record<string, unknown>>(fixture(name, 'reference-training.json'));
  return {
    name,
    config,
    batch: t.batch as number[][],
    runs: {
      'seed-adamw': t['seed-tiny/seed-adamw'] as RunReference,
      'decoupled-wd': t['seed-tiny/decoupled-wd'] as RunReference,
    },
  };
}

/** A model holding the fixture's initial weights. */
function loadModel(g: Golden): GPT2 {
  const model = new GPT2(g.config);
  const tensors = readReferenceTensors(fixture(g.name, 'model.safetensors'));
  for (const t of model.layout.tensors) {
    const ref = tensors.get(t.hfName);
    assert.ok(ref, `model.safetensors lacks ${t.hfName}`);
    model.params.set(ref.data as Float32Array, t.offset);
  }
  return model;
}

/** HF's causal-LM labels = inputs, shifted inside the model: target[t] = input[t+1], last position ignored. */
function batchArrays(batch: number[][]) {
  const B = batch.length;
  const T = batch[0].length;
  const inputs = Int32Array.from(batch.flat());
  const targets = new Int32Array(B * T).fill(-1);
  for (let b = 0; b < B; b++) for (let t = 0; t < T - 1; t++) targets[b * T + t] = inputs[b * T + t + 1];
  return { B, T, inputs, targets };
}

for (const name of ['multi-v512', 'seed-tiny']) {
  describe(`training matches PyTorch on ${name}`, () => {
    const g = golden(name);
    const { B, T, inputs, targets } = batchArrays(g.batch);

    it('step-0 gradients of every tensor are within 1e-5 of the reference', () => {
      const model = loadModel(g);
      model.zeroGrad();
      const loss = model.forward(inputs, B, T, targets);
      model.backward();
      const ref = readReferenceTensors(fixture(name, 'reference-grads-step0.safetensors'));
      let worst = { diff: 0, tensor: '' };
      for (const t of model.layout.tensors) {
        const r = ref.get(t.hfName);
        assert.ok(r, `no reference gradient for ${t.hfName}`);
        for (let i = 0; i < t.size; i++) {
          const d = Math.abs(model.grads![t.offset + i] - (r.data[i] as number));
          if (d > worst.diff) worst = { diff: d, tensor: t.hfName };
        }
      }
      console.log(
        `${name}: step-0 loss ${loss}, largest gradient difference ${worst.diff} (${worst.tensor})`,
      );
      assert.ok(worst.diff <= 1e-5, `gradient difference ${worst.diff} in ${worst.tensor}`);
    });

    for (const run of ['seed-adamw', 'decoupled-wd']) {
      it(`5 AdamW steps (${run}): losses within 1e-5 relative, parameters within the stated bounds`, () => {
        const r = g.runs[run];
        const model = loadModel(g);
        const opt = new AdamW(model.params.length, {
          lr: r.lr,
          beta1: r.betas[0],
          beta2: r.betas[1],
          eps: r.eps,
          weightDecay: r.weight_decay,
        });
        const losses: number[] = [];
        for (let s = 0; s < 5; s++) {
          model.zeroGrad();
          losses.push(model.forward(inputs, B, T, targets));
          model.backward();
          opt.step(model.params, model.grads!);
        }
        const rel = Math.max(...losses.map((l, i) => Math.abs(l - r.losses[i]) / Math.abs(r.losses[i])));
        console.log(
          `${name} ${run}: losses ${losses.map((l) => l.toFixed(6)).join(' ')}, largest rel diff ${rel}`,
        );
        assert.ok(rel <= 1e-5, `loss relative difference ${rel}`);

        const file = fixture(name, `reference-after5-${run}.safetensors`);
        let after: ReturnType<typeof readReferenceTensors>;
        try {
          after = readReferenceTensors(file);
        } catch {
          // The golden data has no final parameters for seed-tiny's decoupled-wd run; its losses are checked above.
          assert.equal(`${name}/${run}`, 'seed-tiny/decoupled-wd', `missing ${file}`);
          return;
        }
        // Adam divides each gradient by its own running magnitude, so an element whose reference gradient is
        // at the level of float32 rounding noise (< 1e-6) can take a step of either sign in PyTorch as well
        // as here. Elements with a real gradient must agree to 1e-5; the noise-level ones get lr·5 steps·
        // a factor 2 as their bound (the largest move the 5 steps can make either way).
        const grads0 = readReferenceTensors(fixture(name, 'reference-grads-step0.safetensors'));
        const noiseBound = 2 * 5 * r.lr;
        const groups = { real: { n: 0, max: 0 }, noise: { n: 0, max: 0 } };
        let worstReal = '';
        for (const t of model.layout.tensors) {
          const a = after.get(t.hfName)!.data;
          const g0 = grads0.get(t.hfName)!.data;
          for (let i = 0; i < t.size; i++) {
            const d = Math.abs(model.params[t.offset + i] - (a[i] as number));
            const group = Math.abs(g0[i] as number) >= 1e-6 ? groups.real : groups.noise;
            group.n++;
            if (d > group.max) {
              group.max = d;
              if (group === groups.real) worstReal = t.hfName;
            }
          }
        }
        console.log(
          `${name} ${run}: params after 5 steps — |grad0| >= 1e-6: ${groups.real.n} elements, max diff ` +
            `${groups.real.max} (${worstReal}); |grad0| < 1e-6: ${groups.noise.n} elements, max diff ${groups.noise.max}`,
        );
        assert.ok(groups.real.max <= 1e-5, `parameter difference ${groups.real.max} in ${worstReal}`);
        assert.ok(groups.noise.max <= noiseBound, `noise-level parameter difference ${groups.noise.max}`);
      });
    }
  });
}

describe('training extras', () => {
  const g = golden('multi-v512');
  const { B, T, inputs, targets } = batchArrays(g.batch);

  it('dropout is off unless training, and with training on it is seeded and changes the loss', () => {
    const model = loadModel(g);
    const clean = model.forward(inputs, B, T, targets);
    model.setDropout({ embd: 0.1, attn: 0.1, resid: 0.1 }, new Rng(7));
    assert.equal(model.forward(inputs, B, T, targets), clean, 'dropout applied outside training');
    model.training = true;
    const dropped = model.forward(inputs, B, T, targets);
    const twin = loadModel(g);
    twin.setDropout({ embd: 0.1, attn: 0.1, resid: 0.1 }, new Rng(7));
    twin.training = true;
    console.log(`loss without dropout ${clean}, with dropout 0.1 ${dropped}`);
    assert.notEqual(dropped, clean);
    assert.equal(twin.forward(inputs, B, T, targets), dropped, 'same seed, different dropout masks');
  });

  it('restricted training head gives the softmax over its subset and gradients only on its rows', () => {
    const full = loadModel(g);
    const sub = loadModel(g);
    const ids = Array.from(new Set([...inputs, ...Array.from({ length: 40 }, (_, i) => i * 7)]));
    sub.setTrainingVocab(ids);
    full.zeroGrad();
    sub.zeroGrad();
    full.forward(inputs, B, T, null);
    const subLoss = sub.forward(inputs, B, T, targets);
    sub.backward();
    // Reference: the same loss computed by hand from the full logits restricted to the subset.
    const V = g.config.vocabSize;
    const logits = full.logits;
    let total = 0;
    let count = 0;
    for (let n = 0; n < B * T; n++) {
      if (targets[n] < 0) continue;
      let max = -Infinity;
      for (const id of ids) max = Math.max(max, logits[n * V + id]);
      let sum = 0;
      for (const id of ids) sum += Math.exp(logits[n * V + id] - max);
      total += Math.log(sum) + max - logits[n * V + targets[n]];
      count++;
    }
    const expected = total / count;
    console.log(`restricted-head loss ${subLoss}, by hand ${expected}, diff ${Math.abs(subLoss - expected)}`);
    assert.ok(Math.abs(subLoss - expected) < 1e-5);
    const C = g.config.nEmbd;
    const inSet = new Set(ids);
    const wte = sub.gradViews!.wte;
    for (let v = 0; v < V; v++) {
      let nonzero = false;
      for (let c = 0; c < C; c++) if (wte[v * C + c] !== 0) nonzero = true;
      // Rows outside the subset get gradient only through the embedding of inputs (all inputs are in it).
      if (!inSet.has(v)) assert.ok(!nonzero, `row ${v} outside the subset got a gradient`);
    }
    // With the rest column: the other V − K tokens enter the softmax as if each had logit 0.
    const rest = loadModel(g);
    rest.setTrainingVocab(ids, { rest: true });
    const restLoss = rest.forward(inputs, B, T, targets);
    let totalRest = 0;
    for (let n = 0; n < B * T; n++) {
      if (targets[n] < 0) continue;
      let sum = V - ids.length;
      for (const id of ids) sum += Math.exp(logits[n * V + id]);
      totalRest += Math.log(sum) - logits[n * V + targets[n]];
    }
    console.log(`rest-column loss ${restLoss}, by hand ${totalRest / count}`);
    assert.ok(Math.abs(restLoss - totalRest / count) < 1e-5);
    const outside = Array.from({ length: V }, (_, v) => v).find((v) => !inSet.has(v))!;
    const bad = Int32Array.from(targets).fill(outside, 0, 1);
    assert.throws(() => sub.forward(inputs, B, T, bad), /training vocabulary/);
  });
});
