// Server defaults and the package root, in a module without dependencies: the CLI reads them before loading the HTTP stack.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RateLimitOptions {
  /** Requests per client per window. */
  max: number;
  /** Window length in milliseconds. */
  windowMs: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = { max: 120, windowMs: 60_000 };

/** Generations that may wait for a free worker before new ones get 503. */
export const DEFAULT_QUEUE_LIMIT = 64;

/** src/server/defaults.ts and dist/server/defaults.js both sit two folders below the package root. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
