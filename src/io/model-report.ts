// Reads the trainer's report files from a model directory (training.json, loss-curve.svg) defensively for the server.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export interface TrainingSummary {
  final_loss: number | null;
  steps: number | null;
  wall_time_s: number | null;
  tokens_per_s: number | null;
  /** [step, loss] pairs, at most `maxPoints` of them, first and last always kept. */
  loss_curve: Array<[number, number]>;
  preset: string | null;
}

function num(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** training.json's `losses` (numbers per step, or [step, loss] pairs) → at most maxPoints [step, loss] pairs. */
export function lossCurve(losses: unknown, maxPoints: number): Array<[number, number]> {
  if (!Array.isArray(losses)) return [];
  const points: Array<[number, number]> = [];
  losses.forEach((entry, i) => {
    if (typeof entry === 'number' && Number.isFinite(entry)) points.push([i + 1, entry]);
    else if (Array.isArray(entry) && entry.length >= 2) {
      const step = num(entry[0]);
      const loss = num(entry[1]);
      if (step !== null && loss !== null) points.push([step, loss]);
    }
  });
  if (points.length <= maxPoints) return points;
  const out: Array<[number, number]> = [];
  for (let i = 0; i < maxPoints; i++)
    out.push(points[Math.round((i * (points.length - 1)) / (maxPoints - 1))]);
  return out;
}

/** The training summary of a model directory, or null when training.json is missing or unreadable. */
export async function readTrainingSummary(dir: string, maxPoints = 200): Promise<TrainingSummary | null> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path.join(dir, 'training.json'), 'utf8'));
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const r = raw as Record<string, unknown>;
  const curve = lossCurve(r.losses, maxPoints);
  const steps = num(r.steps) ?? (curve.length > 0 ? curve[curve.length - 1][0] : null);
  return {
    final_loss: num(r.final_loss) ?? (curve.length > 0 ? curve[curve.length - 1][1] : null),
    steps,
    wall_time_s: num(r.wall_time_s),
    tokens_per_s: num(r.tokens_per_s),
    loss_curve: curve,
    preset: typeof r.preset === 'string' ? r.preset : null,
  };
}

/** The loss-curve.svg of a model directory, or null when there is none. */
export async function readLossCurveSvg(dir: string): Promise<Buffer | null> {
  try {
    return await readFile(path.join(dir, 'loss-curve.svg'));
  } catch {
    return null;
  }
}
