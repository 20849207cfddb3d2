// Imported first by the bench: lets Node 20 validate the relaxed-SIMD kernel build (fused multiply-adds), which
// Node 22+ — the image runs Node 24 — accepts by default, so the figures are those of the kernels we ship.
import { setFlagsFromString } from 'node:v8';

if (Number(process.versions.node.split('.')[0]) < 22) setFlagsFromString('--experimental-wasm-relaxed-simd');
