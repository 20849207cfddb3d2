// Eval loss of the q8_0 weights against their f32 original on the same data: the corpus's lines, each scored
// from position 0 on all V logits (as `tiny-llm eval` scores them), through our inference sessions.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InferenceSession, meanTokenLoss } from '../src/engine/inference.js';
import { Gpt2Tokenizer } from '../src/tokenizer/gpt2-bpe.js';
import { splitLines } from '../src/train/corpus.js';
import { benchWeights } from './engine.js';
import { type BenchModel, repoRoot } from './lib/models.js';
import { printTable } from './lib/table.js';

export interface QualityRow {
  model: string;
  tokens: number;
  f32: number;
  q8_0: number;
  difference: number;
}

/** f32 and q8_0 eval loss of each model on data/training_data.txt (lines cut to `maxTokens`). */
export function benchQuality(models: BenchModel[], maxTokens = 64): QualityRow[] {
  const text = readFileSync(join(repoRoot, 'data', 'training_data.txt'), 'utf8');
  const rows: QualityRow[] = [];
  for (const model of models) {
    if (!model.tokenizerData || !model.params || model.config.nEmbd % 32 !== 0) continue;
    const tokenizer = new Gpt2Tokenizer(model.tokenizerData);
    const positions = Math.min(model.config.nPositions, maxTokens);
    const sequences = splitLines(text).map((line) => tokenizer.encode(line).slice(0, positions));
    const loss = (format: 'f32' | 'q8_0') =>
      meanTokenLoss(new InferenceSession(benchWeights(model, format), { positions }), sequences);
    const f32 = loss('f32');
    const q8 = loss('q8_0');
    rows.push({
      model: model.name,
      tokens: f32.tokens,
      f32: f32.loss,
      q8_0: q8.loss,
      difference: q8.loss - f32.loss,
    });
  }
  printTable(
    `Eval loss, q8_0 against f32 (data/training_data.txt, lines cut to ${maxTokens} tokens; nats/token)`,
    ['model', 'tokens', 'f32', 'q8_0', 'q8_0 − f32'],
    rows.map((r) => [
      r.model,
      String(r.tokens),
      r.f32.toFixed(4),
      r.q8_0.toFixed(4),
      r.difference.toFixed(4),
    ]),
  );
  return rows;
}
