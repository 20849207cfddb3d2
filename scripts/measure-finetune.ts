// Measures what fine-tuning a model directory on the corpus costs per step (wall and CPU seconds, and the
// machine's load meanwhile), for the extrapolations in docs/models.md. Usage:
//   node --import tsx scripts/measure-finetune.ts --model-dir DIR [--steps N] [--restricted] [--eval]
import os from 'node:os';
import { parseArgs } from 'node:util';
import { GPT2 } from '../src/engine/model.js';
import { loadModelDir } from '../src/io/checkpoint.js';
import { readTextFile } from '../src/io/dataset.js';
import { defaultTokenizerData } from '../src/io/tokenizer-files.js';
import { Gpt2Tokenizer } from '../src/tokenizer/gpt2-bpe.js';
import { evaluateLines } from '../src/train/evaluate.js';
import { FINETUNE_HYPER } from '../src/train/presets.js';
import { train } from '../src/train/trainer.js';

const { values: v } = parseArgs({
  options: {
    'model-dir': { type: 'string' },
    'data-file': { type: 'string', default: 'data/training_data.txt' },
    steps: { type: 'string', default: '3' },
    'seq-len': { type: 'string' },
    restricted: { type: 'boolean', default: false },
    eval: { type: 'boolean', default: false },
  },
});
if (!v['model-dir']) throw new Error('--model-dir is required');
const loaded = await loadModelDir(v['model-dir']);
const text = await readTextFile(v['data-file']!, 'data file');
const tokenizer = new Gpt2Tokenizer(loaded.tokenizerData ?? (await defaultTokenizerData()));
const steps = Number(v.steps);
const hyper = {
  ...FINETUNE_HYPER,
  steps,
  seqLen: Math.min(Number(v['seq-len'] ?? FINETUNE_HYPER.seqLen), loaded.config.nPositions),
  restrictVocab: v.restricted === true,
};
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const rows: Array<{ step: number; wall_s: number; cpu_s: number; loss: number; load1: number }> = [];
let lastWall = performance.now();
let lastCpu = cpu();
const result = train({
  config: loaded.config,
  hyper,
  seed: 1234,
  text,
  systemPrompt: null,
  tokenizer,
  initialParams: loaded.params,
  onProgress: (p) => {
    const wall = performance.now();
    const c = cpu();
    rows.push({
      step: p.step,
      wall_s: (wall - lastWall) / 1000,
      cpu_s: c - lastCpu,
      loss: p.loss,
      load1: os.loadavg()[0],
    });
    console.log(JSON.stringify(rows[rows.length - 1]));
    lastWall = wall;
    lastCpu = c;
  },
});
// The first step pays for thread start-up and first-touch allocation: report the others.
const steady = rows.length > 1 ? rows.slice(1) : rows;
const mean = (k: 'wall_s' | 'cpu_s') => steady.reduce((a, r) => a + r[k], 0) / steady.length;
const summary: Record<string, unknown> = {
  model: v['model-dir'],
  parameters: loaded.params.length,
  tokens_per_step: hyper.batchSize * hyper.seqLen,
  softmax: hyper.restrictVocab ? `restricted (${result.trainingVocabSize} tokens + rest)` : 'full',
  replicas: hyper.replicas,
  steady_wall_s_per_step: mean('wall_s'),
  steady_cpu_s_per_step: mean('cpu_s'),
  cores: os.cpus().length,
  load_average_1m: os.loadavg()[0],
};
if (v.eval) {
  const w0 = performance.now();
  const c0 = cpu();
  const e = evaluateLines(new GPT2(loaded.config, result.params), tokenizer, text);
  Object.assign(summary, {
    eval_loss: e.loss,
    eval_tokens: e.tokens,
    eval_wall_s: (performance.now() - w0) / 1000,
    eval_cpu_s: cpu() - c0,
  });
}
console.log(JSON.stringify(summary));
