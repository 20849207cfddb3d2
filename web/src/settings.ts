// Sampling settings: their limits, defaults and the check that turns form text into request fields.

export interface Settings {
  temperature: number;
  topK: number;
  topP: number;
  maxTokens: number;
  /** null = a fresh random seed on the server for every reply. */
  seed: number | null;
}

export type SettingName = keyof Settings;

export interface Limits {
  /** The model's context size: a reply can never be longer. */
  maxTokens: number;
  /** The vocabulary size: top-k above it means "all tokens". */
  vocabSize: number;
}

export const DEFAULT_SETTINGS: Settings = { temperature: 1, topK: 50, topP: 0.95, maxTokens: 50, seed: null };
export const DEFAULT_LIMITS: Limits = { maxTokens: 1024, vocabSize: 50257 };
export const MAX_SEED = 2 ** 31 - 1;

export type SettingsResult =
  | { ok: true; settings: Settings }
  | { ok: false; field: SettingName; message: string };

const LABELS: Record<SettingName, string> = {
  temperature: 'Temperature',
  topK: 'Top-k',
  topP: 'Top-p',
  maxTokens: 'Max tokens',
  seed: 'Seed',
};

function parseNumber(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === '') return null;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : null;
}

/** Checks the raw form values against the limits; the first bad field is named in the message. */
export function readSettings(raw: Record<SettingName, string>, limits: Limits): SettingsResult {
  const fail = (field: SettingName, rule: string): SettingsResult => ({
    ok: false,
    field,
    message: `${LABELS[field]} must be ${rule}.`,
  });

  const temperature = parseNumber(raw.temperature);
  if (temperature === null || temperature < 0 || temperature > 2)
    return fail('temperature', 'a number from 0 to 2');

  const topK = parseNumber(raw.topK);
  if (topK === null || !Number.isInteger(topK) || topK < 0 || topK > limits.vocabSize) {
    return fail('topK', `a whole number from 0 (off) to ${limits.vocabSize}`);
  }

  const topP = parseNumber(raw.topP);
  if (topP === null || topP <= 0 || topP > 1) return fail('topP', 'greater than 0 and at most 1');

  const maxTokens = parseNumber(raw.maxTokens);
  if (maxTokens === null || !Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > limits.maxTokens) {
    return fail('maxTokens', `a whole number from 1 to ${limits.maxTokens}`);
  }

  let seed: number | null = null;
  if (raw.seed.trim() !== '') {
    const value = parseNumber(raw.seed);
    if (value === null || !Number.isInteger(value) || value < 0 || value > MAX_SEED) {
      return fail('seed', `empty (random) or a whole number from 0 to ${MAX_SEED}`);
    }
    seed = value;
  }
  return { ok: true, settings: { temperature, topK, topP, maxTokens, seed } };
}
