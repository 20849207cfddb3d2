// AdamW over the flat parameter buffer (PyTorch's torch.optim.AdamW update, decoupled weight decay).

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export class AdamW {
  /** First and second moments, same layout as the parameters. */
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Number of steps taken. */
  t = 0;

  constructor(
    size: number,
    readonly options: AdamWOptions,
  ) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  /**
   * One update: p ← p·(1 − lr·wd); m, v ← moving averages of g, g²;
   * p ← p − lr/(1 − β1ᵗ) · m / (√v/√(1 − β2ᵗ) + eps). `lr` overrides the base rate (schedules).
   * `decayMask` (1 = decay) limits weight decay to some parameters; omitted → every parameter decays.
   */
  step(params: Float32Array, grads: Float32Array, lr = this.options.lr, decayMask?: Uint8Array): void {
    const { beta1, beta2, eps, weightDecay } = this.options;
    this.t++;
    const bc1 = 1 - beta1 ** this.t;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.t);
    const stepSize = lr / bc1;
    const decay = 1 - lr * weightDecay;
    const { m, v } = this;
    for (let i = 0; i < params.length; i++) {
      const g = grads[i];
      const mi = beta1 * m[i] + (1 - beta1) * g;
      const vi = beta2 * v[i] + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      let p = params[i];
      if (weightDecay !== 0 && (!decayMask || decayMask[i])) p *= decay;
      params[i] = p - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
    }
  }
}

/** Scales grads so their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(grads: Float32Array, maxNorm: number): number {
  let sq = 0;
  for (let i = 0; i < grads.length; i++) sq += grads[i] * grads[i];
  const norm = Math.sqrt(sq);
  if (Number.isFinite(maxNorm) && maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (let i = 0; i < grads.length; i++) grads[i] *= scale;
  }
  return norm;
}

/** Linear warmup then cosine decay from lr to minLr over totalSteps (step counts from 0). */
export function cosineSchedule(
  step: number,
  lr: number,
  warmupSteps: number,
  totalSteps: number,
  minLr = 0,
): number {
  if (warmupSteps > 0 && step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  if (step >= totalSteps) return minLr;
  const span = Math.max(1, totalSteps - warmupSteps);
  const progress = (step - warmupSteps) / span;
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * progress));
}
