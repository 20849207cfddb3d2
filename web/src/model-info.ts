// Reads GET /api/model defensively and computes what the model card shows (numbers, loss-curve geometry).

export interface ModelConfig {
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
}

export interface Training {
  finalLoss: number | null;
  steps: number | null;
  wallTimeS: number | null;
  tokensPerS: number | null;
  preset: string | null;
  /** [step, loss] pairs in step order. */
  lossCurve: [number, number][];
}

export interface ModelInfo {
  id: string;
  config: ModelConfig | null;
  parameters: number | null;
  training: Training | null;
  defaults: { temperature?: number; top_k?: number; top_p?: number; max_tokens?: number };
  systemPrompt: string | null;
}

const finite = (value: unknown): number | null =>
  typeof value === 'number' && Number.isFinite(value) ? value : null;

function readCurve(value: unknown): [number, number][] {
  if (!Array.isArray(value)) return [];
  const points: [number, number][] = [];
  value.forEach((entry: unknown, index) => {
    // Pairs [step, loss], or bare losses where the index is the step.
    if (Array.isArray(entry) && entry.length >= 2) {
      const step = finite(entry[0]);
      const loss = finite(entry[1]);
      if (step !== null && loss !== null) points.push([step, loss]);
    } else {
      const loss = finite(entry);
      if (loss !== null) points.push([index, loss]);
    }
  });
  return points.sort((a, b) => a[0] - b[0]);
}

function readConfig(value: unknown): ModelConfig | null {
  if (typeof value !== 'object' || value === null) return null;
  const c = value as Record<string, unknown>;
  const fields = ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head'] as const;
  const out: Partial<ModelConfig> = {};
  for (const field of fields) {
    const v = finite(c[field]);
    if (v === null) return null;
    out[field] = v;
  }
  return out as ModelConfig;
}

/** Turns the JSON body into a ModelInfo; anything missing or malformed becomes null. */
export function readModelInfo(body: unknown): ModelInfo {
  const b = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  let training: Training | null = null;
  if (typeof b.training === 'object' && b.training !== null) {
    const t = b.training as Record<string, unknown>;
    training = {
      finalLoss: finite(t.final_loss),
      steps: finite(t.steps),
      wallTimeS: finite(t.wall_time_s),
      tokensPerS: finite(t.tokens_per_s),
      preset: typeof t.preset === 'string' ? t.preset : null,
      lossCurve: readCurve(t.loss_curve ?? t.losses),
    };
  }
  const d =
    typeof b.defaults === 'object' && b.defaults !== null ? (b.defaults as Record<string, unknown>) : {};
  const defaults: ModelInfo['defaults'] = {};
  for (const key of ['temperature', 'top_k', 'top_p', 'max_tokens'] as const) {
    const v = finite(d[key]);
    if (v !== null) defaults[key] = v;
  }
  return {
    id: typeof b.id === 'string' ? b.id : 'model',
    config: readConfig(b.config),
    parameters: finite(b.parameters),
    training,
    defaults,
    systemPrompt: typeof b.system_prompt === 'string' ? b.system_prompt : null,
  };
}

/** 1234567 → "1.23 M"; small counts stay exact with thousands separators. */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toPrecision(3)} B`;
  if (n >= 1e6) return `${(n / 1e6).toPrecision(3)} M`;
  if (n >= 1e4) return `${(n / 1e3).toPrecision(3)} k`;
  return Math.round(n).toLocaleString('en-US');
}

/** Seconds as "42 s", "3 min 5 s" or "1 h 2 min". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  const total = Math.round(seconds);
  if (total < 3600) return `${Math.floor(total / 60)} min ${total % 60} s`;
  return `${Math.floor(total / 3600)} h ${Math.floor((total % 3600) / 60)} min`;
}

export interface Box {
  width: number;
  height: number;
  pad: number;
}

/**
 * Maps [step, loss] pairs into an SVG box (y grows downwards), as the `points` attribute of a polyline.
 * A flat curve or a single point sits in the middle instead of dividing by zero.
 */
export function curvePoints(curve: readonly [number, number][], box: Box): string {
  if (curve.length === 0) return '';
  const steps = curve.map((p) => p[0]);
  const losses = curve.map((p) => p[1]);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.min(...losses), Math.max(...losses)];
  const w = box.width - 2 * box.pad;
  const h = box.height - 2 * box.pad;
  const sx = (s: number) => box.pad + (x1 === x0 ? w / 2 : ((s - x0) / (x1 - x0)) * w);
  const sy = (l: number) => box.pad + (y1 === y0 ? h / 2 : ((y1 - l) / (y1 - y0)) * h);
  return curve.map(([s, l]) => `${sx(s).toFixed(1)},${sy(l).toFixed(1)}`).join(' ');
}
