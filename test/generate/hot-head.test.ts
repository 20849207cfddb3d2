// The hot-row LM head: a model whose head has a few large rows and many tiny ones (restricted-softmax training)
// scores the large rows first, and generation picks exactly the tokens it picks when scoring every row.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { HotRowsHead } from '../../src/engine/head/hot-rows.js';
import { findHotRows, InferenceSession, InferenceWeights } from '../../src/engine/inference.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { Rng } from '../../src/engine/rng.js';
import { wasmArena } from '../../src/engine/wasm/runtime.js';
import { type GenerateOptions, generateAll } from '../../src/generate/generate.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { fixture } from '../helpers/fixtures.js';

const HOT = 48; // every 10th id below 480 is hot, plus EOS-like id 511
/** Cold rows this small still leave a clear gap in norms, but the bound often cannot rule them out. */
const COLD_LOOSE = 0.2;

/** multi-v512's weights with every non-hot row of the tied head/embedding scaled by `coldScale`. */
async function partlyTrained(
  coldScale: number,
): Promise<{ config: GPTConfig; params: Float32Array; hot: number[] }> {
  const { config, params: golden } = await loadModelDir(fixture('multi-v512'));
  const params = Float32Array.from(golden);
  const layout = parameterLayout(config);
  const heads = ['transformer.wte.weight', 'lm_head.weight'].flatMap((name) => layout.byName.get(name) ?? []);
  assert.ok(heads.length > 0, 'layout has the token embedding');
  const hot = [...Array.from({ length: HOT }, (_, i) => i * 10), config.vocabSize - 1];
  const isHot = new Set(hot);
  const C = config.nEmbd;
  for (let v = 0; v < config.vocabSize; v++) {
    if (isHot.has(v)) continue;
    for (const t of heads) for (let c = 0; c < C; c++) params[t.offset + v * C + c] *= coldScale;
  }
  return { config, params, hot };
}

function pair(config: GPTConfig, params: Float32Array): { hot: InferenceSession; full: InferenceSession } {
  const hotWeights = new InferenceWeights(config, params);
  const fullWeights = new InferenceWeights(config, params, { lmHead: 'full' });
  return { hot: new InferenceSession(hotWeights), full: new InferenceSession(fullWeights) };
}

/** The session's LM head as the hot-row strategy (the test models have hot rows). */
function hotHead(session: InferenceSession): HotRowsHead {
  const head = session.lmHead;
  assert.ok(head instanceof HotRowsHead, `the session's head is ${head.name}, not hot rows`);
  return head;
}

/** Runs `ids` through the session and scores the next position's hot rows; returns its hot logits. */
function stepHot(session: InferenceSession, ids: number[]): Float32Array {
  session.prefill(ids);
  return hotHead(session).hotLogits(0);
}

const available = wasmArena() !== null;

describe('hot-row LM head', { skip: available ? false : 'needs the WebAssembly kernels' }, () => {
  it('finds the large rows by the gap in row norms, and none in a model trained on every token', async () => {
    const { config, params, hot } = await partlyTrained(0.05);
    const weights = new InferenceWeights(config, params);
    assert.deepEqual(Array.from(weights.hotRows?.ids ?? []), hot);
    assert.equal(weights.headStrategy, 'hot-rows');
    const seed = await loadModelDir(fixture('seed-tiny'));
    const seedWeights = new InferenceWeights(seed.config, seed.params);
    assert.equal(seedWeights.hotRows, null, 'seed-tiny has no gap in its row norms');
    assert.equal(findHotRows(new Float32Array(4 * 2).fill(1), 4, 2), null, 'equal rows: no hot set');
  });

  it('weights on a shared head adopt its hot rows as packed (no new scan) and give the same hot logits', async () => {
    const { config, params, hot } = await partlyTrained(0.05);
    const owner = new InferenceWeights(config, params, { head: 'share' });
    const shared = owner.sharedHead;
    assert.ok(shared?.hot, 'the shared head carries the hot rows');
    assert.deepEqual(Array.from(shared.hot.ids), hot);
    const adopted = new InferenceWeights(config, params, { head: shared });
    assert.equal(adopted.hotRows, shared.hot, 'the hot rows were found or packed again');
    const own = new InferenceWeights(config, params);
    const a = new InferenceSession(own);
    const b = new InferenceSession(adopted);
    assert.equal(b.lmHead.name, 'hot-rows', 'the adopted hot rows are used');
    let worst = 0;
    let la = Float32Array.from(stepHot(a, [5, 6, 7]));
    let lb = stepHot(b, [5, 6, 7]);
    for (let step = 0; step < 10; step++) {
      for (let i = 0; i < la.length; i++) worst = Math.max(worst, Math.abs(la[i] - lb[i]));
      worst = Math.max(worst, Math.abs(hotHead(a).coldBound(0) - hotHead(b).coldBound(0)));
      la = Float32Array.from(stepHot(a, [step * 7]));
      lb = stepHot(b, [step * 7]);
    }
    console.log(`own vs adopted hot head: largest abs diff of hot logits and cold bounds ${worst}`);
    assert.equal(worst, 0);
  });

  it('hot logits are bit-identical to the full head, and the cold bound holds at every step', async () => {
    const { config, params, hot } = await partlyTrained(0.05);
    const { hot: session } = pair(config, params);
    const isHot = new Set(hot);
    const rng = new Rng(3);
    let maxDiff = 0;
    let tightest = Number.POSITIVE_INFINITY;
    let hotLogits = stepHot(session, [1, 2, 3]);
    for (let step = 0; step < 60; step++) {
      const hotCopy = Float32Array.from(hotLogits);
      const bound = hotHead(session).coldBound(0);
      const full = session.lmHead.logits(0);
      for (let i = 0; i < hot.length; i++) maxDiff = Math.max(maxDiff, Math.abs(full[hot[i]] - hotCopy[i]));
      for (let v = 0; v < full.length; v++) {
        if (!isHot.has(v)) tightest = Math.min(tightest, bound - full[v]);
      }
      hotLogits = stepHot(session, [Math.floor(rng.random() * config.vocabSize)]);
    }
    console.log(
      `hot vs full logits: largest abs diff ${maxDiff}; smallest margin under the cold bound ${tightest}`,
    );
    assert.equal(maxDiff, 0);
    assert.ok(tightest > 0, `a cold logit reached the bound (margin ${tightest})`);
  });

  it('generation picks the same tokens as scoring every row, whether the bound decides or not', async () => {
    // coldScale 0.05: the bound rules the cold rows out; COLD_LOOSE: it often cannot, and the full head is used.
    for (const coldScale of [0.05, COLD_LOOSE]) {
      const { config, params } = await partlyTrained(coldScale);
      const { hot, full } = pair(config, params);
      const settings: Omit<GenerateOptions, 'seed'>[] = [
        { temperature: 1, topK: 20, topP: 0.95, repetitionPenalty: 1, maxNewTokens: 40, eosTokenId: null },
        { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, maxNewTokens: 40, eosTokenId: null },
        { temperature: 0.8, topK: 5, topP: 1, repetitionPenalty: 1, maxNewTokens: 40, eosTokenId: null },
        // Not decidable from the hot rows: these take the full path in both sessions.
        { temperature: 1, topK: 0, topP: 0.9, repetitionPenalty: 1, maxNewTokens: 40, eosTokenId: null },
        { temperature: 1, topK: 20, topP: 1, repetitionPenalty: 1.3, maxNewTokens: 40, eosTokenId: null },
      ];
      let compared = 0;
      for (const options of settings) {
        for (let seed = 0; seed < 8; seed++) {
          const a = generateAll(hot, null, [5, 6, 7], { ...options, seed });
          const b = generateAll(full, null, [5, 6, 7], { ...options, seed });
          assert.deepEqual(a.ids, b.ids, `coldScale ${coldScale}, ${JSON.stringify(options)}, seed ${seed}`);
          compared += a.ids.length;
        }
      }
      console.log(
        `coldScale ${coldScale}: ${compared} generated tokens identical with and without the hot head`,
      );
    }
  });

  it('top-k comes from the hot rows exactly when the k-th hot logit clears the cold bound, else from the full head', async () => {
    const { config, params } = await partlyTrained(COLD_LOOSE);
    const { hot: session } = pair(config, params);
    const head = hotHead(session);
    const ids = new Int32Array(5);
    const values = new Float64Array(5);
    let declined = 0;
    let decided = 0;
    let logits = stepHot(session, [9]);
    for (let step = 0; step < 60; step++) {
      const bound = head.coldBound(0);
      const fifth = Float32Array.from(logits).sort().reverse()[4];
      assert.ok(head.top(0, 5, ids, values), `step ${step}: no answer`);
      const source = head.lastSource;
      assert.equal(
        source === 'hot-rows',
        fifth > bound,
        `step ${step}: 5th hot logit ${fifth}, bound ${bound}, answered by ${source}`,
      );
      const full = head.logits(0);
      const want = Array.from(full.keys())
        .sort((a, b) => full[b] - full[a] || a - b)
        .slice(0, 5);
      assert.deepEqual(Array.from(ids), want, `step ${step}: top 5 ids`);
      assert.deepEqual(
        Array.from(values),
        want.map((v) => full[v]),
        `step ${step}: top 5 values`,
      );
      if (source === 'hot-rows') decided++;
      else declined++;
      logits = stepHot(session, [step % config.vocabSize]);
    }
    console.log(
      `coldScale ${COLD_LOOSE}, top-5: ${decided} steps decided from the hot rows, ${declined} by the full head`,
    );
    assert.ok(declined > 0 && decided > 0, 'both outcomes were exercised');
  });
});
