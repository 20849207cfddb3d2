// Training benchmark: wall time, tokens/s and final loss of `tiny-llm create-model --train` (the compiled
// CLI in dist/, as the image build runs it) for both presets on data/training_data.txt.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, nowMs } from './lib/stats.js';
import { printTable } from './lib/table.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'bin', 'tiny-llm.js');
const DATA = join(ROOT, 'data', 'training_data.txt');

interface TrainRun {
  wallS: number;
  trainS: number;
  steps: number;
  tokensSeen: number;
  tokensPerS: number;
  evalLoss: number;
  finalTrainLoss: number;
}

/** One `create-model --train --force-train` into a fresh temp dir; its figures come from training.json. */
function runOnce(preset: string): TrainRun {
  const dir = mkdtempSync(join(tmpdir(), `tiny-llm-bench-train-${preset}-`));
  try {
    const modelDir = join(dir, 'model');
    const t0 = nowMs();
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        'create-model',
        '--train',
        '--force-train',
        '--preset',
        preset,
        '--data-file',
        DATA,
        '--model-dir',
        modelDir,
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const wallS = (nowMs() - t0) / 1000;
    if (r.status !== 0)
      throw new Error(`create-model exited ${r.status}: ${(r.stderr || r.stdout).slice(-500)}`);
    const report = JSON.parse(readFileSync(join(modelDir, 'training.json'), 'utf8'));
    return {
      wallS,
      trainS: report.wall_time_s,
      steps: report.steps,
      tokensSeen: report.tokens_seen,
      tokensPerS: report.tokens_per_s,
      evalLoss: report.eval_loss,
      finalTrainLoss: report.final_train_loss,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Rounds per preset: the seed preset up to 3, the default one (about 100 s a run) up to 2; medians of
 * wall time and tokens/s, the loss of the last round (a seed fixes it: every round gives the same).
 */
export async function benchTrain(rounds: number, skip: (what: string, why: unknown) => void) {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'cli.cjs'))) {
    skip('train', 'dist/ is missing: run `npm run build` first (the benchmark times the compiled CLI)');
    return null;
  }
  const rows: Record<string, Record<string, number>> = {};
  for (const [preset, cap] of [
    ['seed', 3],
    ['default', 2],
  ] as const) {
    const n = Math.min(rounds, cap);
    const runs: TrainRun[] = [];
    try {
      for (let i = 0; i < n; i++) {
        console.log(`train: create-model --train --preset ${preset}, round ${i + 1}/${n}`);
        runs.push(runOnce(preset));
      }
    } catch (e) {
      skip(`train (${preset})`, e);
      continue;
    }
    const last = runs[runs.length - 1];
    rows[preset] = {
      rounds: n,
      wallS: median(runs.map((r) => r.wallS)),
      trainS: median(runs.map((r) => r.trainS)),
      steps: last.steps,
      tokensSeen: last.tokensSeen,
      tokensPerS: median(runs.map((r) => r.tokensPerS)),
      msPerStep: (median(runs.map((r) => r.trainS)) / last.steps) * 1000,
      evalLoss: last.evalLoss,
      finalTrainLoss: last.finalTrainLoss,
    };
  }
  printTable(
    `Training: create-model --train on data/training_data.txt (dist/ CLI; medians of the rounds shown)`,
    ['preset', 'rounds', 'wall s', 'training s', 'steps', 'ms/step', 'tokens/s', 'eval loss (nats/token)'],
    Object.entries(rows).map(([preset, r]) => [
      preset,
      String(r.rounds),
      r.wallS.toFixed(1),
      r.trainS.toFixed(1),
      String(r.steps),
      r.msPerStep.toFixed(1),
      r.tokensPerS.toFixed(0),
      r.evalLoss.toFixed(4),
    ]),
  );
  return rows;
}
