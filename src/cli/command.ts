// Shared shape of a CLI sub-command and the error type that turns into "usage + reason, exit 2".
import { type ParseArgsConfig, parseArgs } from 'node:util';

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

/** Thrown for bad arguments: the dispatcher prints the command's usage and this message, and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with strict checking; every parse failure becomes a UsageError naming the bad argument. */
export function parseCommandArgs<O extends Options>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Parses a numeric flag, rejecting anything that is not a finite number in [min, max] (integer if asked). */
export function numberArg(
  flag: string,
  raw: string | undefined,
  opts: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value))
    throw new UsageError(`--${flag} must be a number, got "${raw}"`);
  if (opts.integer && !Number.isInteger(value))
    throw new UsageError(`--${flag} must be an integer, got "${raw}"`);
  if (opts.min !== undefined && value < opts.min)
    throw new UsageError(`--${flag} must be >= ${opts.min}, got ${raw}`);
  if (opts.max !== undefined && value > opts.max)
    throw new UsageError(`--${flag} must be <= ${opts.max}, got ${raw}`);
  return value;
}

/** Fails with a UsageError when a required flag is missing. */
export function requireArg<T>(flag: string, value: T | undefined): T {
  if (value === undefined || value === '') throw new UsageError(`--${flag} is required`);
  return value;
}
