// Paths to the committed golden fixtures and small readers for their reference files.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSafetensors } from '../../src/io/safetensors.js';

export const fixturesDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const repoRoot = join(fixturesDir, '..', '..');

export function fixture(...parts: string[]): string {
  return join(fixturesDir, ...parts);
}

export function readJson<T = unknown>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** Reads a reference safetensors file into name → Float32Array (integer tensors converted to numbers). */
export function readReferenceTensors(
  path: string,
): Map<string, { shape: number[]; data: Float32Array | number[] }> {
  const parsed = parseSafetensors(new Uint8Array(readFileSync(path)), path);
  const out = new Map<string, { shape: number[]; data: Float32Array | number[] }>();
  for (const [name, t] of parsed) {
    const data =
      t.data instanceof Float32Array ? t.data : Array.from(t.data as ArrayLike<number | bigint>, Number);
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

/** Largest absolute difference between two equally long numeric arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}
