// The plain memory-read rate of this machine from WebAssembly SIMD: the bound a decode step that streams its
// weights cannot beat.
import asc from 'assemblyscript/asc';
import { median, nowMs } from './stats.js';

const SOURCE = `
export function readSum(p: usize, bytes: usize): i32 {
  let a0 = i32x4.splat(0);
  let a1 = a0;
  let a2 = a0;
  let a3 = a0;
  const end = p + bytes;
  while (p < end) {
    a0 = i32x4.add(a0, v128.load(p));
    a1 = i32x4.add(a1, v128.load(p, 16));
    a2 = i32x4.add(a2, v128.load(p, 32));
    a3 = i32x4.add(a3, v128.load(p, 48));
    p += 64;
  }
  const s = i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3));
  return i32x4.extract_lane(s, 0) ^ i32x4.extract_lane(s, 3);
}
`;

/** Bytes/s one thread reads through 256 MiB with 128-bit loads (median of `runs` passes). */
export async function readBandwidth(runs: number): Promise<number> {
  const { binary, error } = await asc.compileString(SOURCE, {
    optimizeLevel: 3,
    runtime: 'stub',
    enable: ['simd'],
    importMemory: true,
    initialMemory: 4097,
  } as never);
  if (error || !binary) throw new Error(`asc: ${error?.message}`);
  const memory = new WebAssembly.Memory({ initial: 4097 });
  const { readSum } = new WebAssembly.Instance(new WebAssembly.Module(binary as Uint8Array<ArrayBuffer>), {
    env: { memory },
  }).exports as {
    readSum(p: number, bytes: number): number;
  };
  const bytes = 256 * 1024 * 1024;
  new Uint8Array(memory.buffer, 65536, bytes).fill(1);
  // Two passes untimed: the first runs before V8 has optimised the kernel.
  readSum(65536, bytes);
  readSum(65536, bytes);
  const rates: number[] = [];
  for (let i = 0; i < Math.max(3, runs); i++) {
    const t0 = nowMs();
    readSum(65536, bytes);
    rates.push(bytes / ((nowMs() - t0) / 1000));
  }
  return median(rates);
}
