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

/** Where a served model came from, for /api/model and /v1/models (and so for the pipeline's smoke test). */
export interface ModelOrigin {
  /** source.json's kind ('huggingface-hub', 'directory', 'cloud-storage'), or 'trained' / 'random-init'. */
  kind: string;
  /** hf:ORG/NAME, the directory's absolute path when it was created, or gs://BUCKET/PREFIX; null when trained. */
  uri: string | null;
  /** The revision asked for (Hub sources). */
  revision: string | null;
  /** The commit that revision named when it was fetched (Hub sources). */
  commit: string | null;
  /** The preset of a model made from scratch. */
  preset: string | null;
  /** Trained on the corpus after it was loaded from its source. */
  fine_tuned: boolean;
  /** One line: "hf:distilgpt2@main (commit 0123456789ab)", "trained: preset default". */
  description: string;
}

function text(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

async function readJsonObject(file: string): Promise<Record<string, unknown> | null> {
  try {
    const raw: unknown = JSON.parse(await readFile(file, 'utf8'));
    return typeof raw === 'object' && raw !== null && !Array.isArray(raw)
      ? (raw as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/**
 * The origin of the model in `dir`: source.json (written by `create-model --from-pretrained`) when it names a
 * URI, else training.json's preset (a model made from scratch), else 'unknown'. Never throws: a missing or
 * malformed file only makes the answer less specific.
 */
export async function readModelOrigin(dir: string): Promise<ModelOrigin> {
  const [source, training] = await Promise.all([
    readJsonObject(path.join(dir, 'source.json')),
    readJsonObject(path.join(dir, 'training.json')),
  ]);
  const preset = text(training?.preset);
  const uri = text(source?.uri);
  if (source && uri) {
    const revision = text(source.revision);
    const commit = text(source.commit);
    const fineTuned = training?.trained === true;
    const pinned = revision ? `${uri}@${revision}` : uri;
    return {
      kind: text(source.kind) ?? 'unknown',
      uri,
      revision,
      commit,
      preset: null,
      fine_tuned: fineTuned,
      description: `${pinned}${commit && commit !== revision ? ` (commit ${commit.slice(0, 12)})` : ''}${fineTuned ? ', fine-tuned' : ''}`,
    };
  }
  if (training) {
    const trained = training.trained === true;
    return {
      kind: trained ? 'trained' : 'random-init',
      uri: null,
      revision: null,
      commit: null,
      preset,
      fine_tuned: false,
      description: `${trained ? 'trained' : 'random init'}: preset ${preset ?? 'unknown'}`,
    };
  }
  return {
    kind: 'unknown',
    uri: null,
    revision: null,
    commit: null,
    preset: null,
    fine_tuned: false,
    description: 'unknown: no source.json or training.json beside the weights',
  };
}
