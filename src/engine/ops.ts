// GPT-2 layers as forward/backward pairs over flat Float32Arrays (outputs first, then inputs/weights, then dims).
// Dimension letters: B batch, T time, C channels, NH heads, hs head size, V vocabulary.

/**
 * e^x for x ≤ 0, the softmax's case (arguments after subtracting the row's maximum): (Taylor e^(x/1024))^1024,
 * no table or branch but the underflow one, so cheaper than Math.exp. Relative error below 1e-10 for
 * x ≥ −40 and 1e-8 down to −87; 0 below that (under float32's range, so float32 results are unchanged).
 */
export function expNeg(x: number): number {
  if (x < -87.5) return 0;
  const y = x * (1 / 1024);
  let p = 1 + y * (1 + y * (0.5 + y * (1 / 6 + y * (1 / 24 + y * (1 / 120 + y * (1 / 720))))));
  p *= p;
  p *= p;
  p *= p;
  p *= p;
  p *= p;
  p *= p;
  p *= p;
  p *= p;
  p *= p;
  p *= p;
  return p;
}

/** tanh through expNeg (tanh is odd; e^(−2|u|) ≤ 1): the GELU's inner function. */
export function tanhFast(u: number): number {
  const e = expNeg(-2 * Math.abs(u));
  const t = (1 - e) / (1 + e);
  return u < 0 ? -t : t;
}

/** out[B,T,C] = wte[inp[b,t]] + wpe[t]. */
export function encoderForward(
  out: Float32Array,
  inp: Int32Array,
  wte: Float32Array,
  wpe: Float32Array,
  B: number,
  T: number,
  C: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * C;
      const ix = inp[b * T + t] * C;
      const p = t * C;
      for (let c = 0; c < C; c++) out[o + c] = wte[ix + c] + wpe[p + c];
    }
  }
}

/** Accumulates dwte and dwpe from dout[B,T,C]. */
export function encoderBackward(
  dwte: Float32Array,
  dwpe: Float32Array,
  dout: Float32Array,
  inp: Int32Array,
  B: number,
  T: number,
  C: number,
): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const d = (b * T + t) * C;
      const ix = inp[b * T + t] * C;
      const p = t * C;
      for (let c = 0; c < C; c++) {
        dwte[ix + c] += dout[d + c];
        dwpe[p + c] += dout[d + c];
      }
    }
  }
}

/** LayerNorm over C for N rows; keeps mean[N] and rstd[N] for the backward pass. */
export function layernormForward(
  out: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  inp: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  N: number,
  C: number,
  eps: number,
): void {
  for (let n = 0; n < N; n++) {
    const x = n * C;
    let m = 0;
    for (let c = 0; c < C; c++) m += inp[x + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) {
      const d = inp[x + c] - m;
      v += d * d;
    }
    v /= C;
    const s = 1 / Math.sqrt(v + eps);
    for (let c = 0; c < C; c++) out[x + c] = (inp[x + c] - m) * s * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

/** Backward of layernormForward; accumulates dinp, dweight, dbias. */
export function layernormBackward(
  dinp: Float32Array,
  dweight: Float32Array,
  dbias: Float32Array,
  dout: Float32Array,
  inp: Float32Array,
  weight: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  N: number,
  C: number,
): void {
  for (let n = 0; n < N; n++) {
    const x = n * C;
    const m = mean[n];
    const s = rstd[n];
    let dnormMean = 0;
    let dnormNormMean = 0;
    for (let c = 0; c < C; c++) {
      const norm = (inp[x + c] - m) * s;
      const dnorm = weight[c] * dout[x + c];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let c = 0; c < C; c++) {
      const norm = (inp[x + c] - m) * s;
      const dnorm = weight[c] * dout[x + c];
      dbias[c] += dout[x + c];
      dweight[c] += norm * dout[x + c];
      dinp[x + c] += (dnorm - dnormMean - norm * dnormNormMean) * s;
    }
  }
}

/**
 * Causal multi-head self-attention. inp[B,T,3C] holds q,k,v (head h uses channels h·hs..); out[B,T,C].
 * preatt and att are [B,NH,T,T] (only t2 ≤ t is written), kept for the backward pass. `dropMask`
 * (optional, [B,NH,T,T], 0 or 1/(1−p)) drops attention probabilities: out = Σ (att ⊙ mask)·v, while att
 * keeps the softmax before dropout, which the backward pass needs.
 */
export function attentionForward(
  out: Float32Array,
  preatt: Float32Array,
  att: Float32Array,
  inp: Float32Array,
  B: number,
  T: number,
  C: number,
  NH: number,
  dropMask?: Float32Array,
): void {
  const C3 = 3 * C;
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * C3 + h * hs;
        const row = ((b * NH + h) * T + t) * T;
        let max = Number.NEGATIVE_INFINITY;
        // Inner loops are unrolled by four (same summation order, so the same results).
        for (let t2 = 0; t2 <= t; t2++) {
          const k = (b * T + t2) * C3 + h * hs + C;
          let s = 0;
          let i = 0;
          for (; i + 4 <= hs; i += 4) {
            s += inp[q + i] * inp[k + i];
            s += inp[q + i + 1] * inp[k + i + 1];
            s += inp[q + i + 2] * inp[k + i + 2];
            s += inp[q + i + 3] * inp[k + i + 3];
          }
          for (; i < hs; i++) s += inp[q + i] * inp[k + i];
          s *= scale;
          preatt[row + t2] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const e = expNeg(preatt[row + t2] - max);
          att[row + t2] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let t2 = 0; t2 <= t; t2++) att[row + t2] *= inv;
        for (let t2 = t + 1; t2 < T; t2++) att[row + t2] = 0;
        const o = (b * T + t) * C + h * hs;
        for (let i = 0; i < hs; i++) out[o + i] = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          const v = (b * T + t2) * C3 + h * hs + 2 * C;
          const a = dropMask ? att[row + t2] * dropMask[row + t2] : att[row + t2];
          let i = 0;
          for (; i + 4 <= hs; i += 4) {
            out[o + i] += a * inp[v + i];
            out[o + i + 1] += a * inp[v + i + 1];
            out[o + i + 2] += a * inp[v + i + 2];
            out[o + i + 3] += a * inp[v + i + 3];
          }
          for (; i < hs; i++) out[o + i] += a * inp[v + i];
        }
      }
    }
  }
}

/**
 * Backward of attentionForward; accumulates dinp[B,T,3C]; dpreatt/datt are scratch [B,NH,T,T]. att is the
 * softmax before dropout; `dropMask` is the forward's mask, if it had one.
 */
export function attentionBackward(
  dinp: Float32Array,
  dpreatt: Float32Array,
  datt: Float32Array,
  dout: Float32Array,
  inp: Float32Array,
  att: Float32Array,
  B: number,
  T: number,
  C: number,
  NH: number,
  dropMask?: Float32Array,
): void {
  const C3 = 3 * C;
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * NH + h) * T + t) * T;
        const d = (b * T + t) * C + h * hs;
        // out = Σ (att ⊙ mask)·v: v's gradient uses the dropped weights, att's goes through the mask.
        for (let t2 = 0; t2 <= t; t2++) {
          const v = (b * T + t2) * C3 + h * hs + 2 * C;
          const m = dropMask ? dropMask[row + t2] : 1;
          const a = att[row + t2] * m;
          let s = 0;
          let i = 0;
          for (; i + 4 <= hs; i += 4) {
            s += inp[v + i] * dout[d + i];
            dinp[v + i] += a * dout[d + i];
            s += inp[v + i + 1] * dout[d + i + 1];
            dinp[v + i + 1] += a * dout[d + i + 1];
            s += inp[v + i + 2] * dout[d + i + 2];
            dinp[v + i + 2] += a * dout[d + i + 2];
            s += inp[v + i + 3] * dout[d + i + 3];
            dinp[v + i + 3] += a * dout[d + i + 3];
          }
          for (; i < hs; i++) {
            s += inp[v + i] * dout[d + i];
            dinp[v + i] += a * dout[d + i];
          }
          datt[row + t2] = s * m;
        }
        // softmax: dpre = att ⊙ (datt − Σ att·datt)
        let dot = 0;
        for (let t2 = 0; t2 <= t; t2++) dot += att[row + t2] * datt[row + t2];
        for (let t2 = 0; t2 <= t; t2++) dpreatt[row + t2] = att[row + t2] * (datt[row + t2] - dot);
        // pre = scale · q·k
        const q = (b * T + t) * C3 + h * hs;
        for (let t2 = 0; t2 <= t; t2++) {
          const k = (b * T + t2) * C3 + h * hs + C;
          const g = dpreatt[row + t2] * scale;
          let i = 0;
          for (; i + 4 <= hs; i += 4) {
            dinp[q + i] += inp[k + i] * g;
            dinp[k + i] += inp[q + i] * g;
            dinp[q + i + 1] += inp[k + i + 1] * g;
            dinp[k + i + 1] += inp[q + i + 1] * g;
            dinp[q + i + 2] += inp[k + i + 2] * g;
            dinp[k + i + 2] += inp[q + i + 2] * g;
            dinp[q + i + 3] += inp[k + i + 3] * g;
            dinp[k + i + 3] += inp[q + i + 3] * g;
          }
          for (; i < hs; i++) {
            dinp[q + i] += inp[k + i] * g;
            dinp[k + i] += inp[q + i] * g;
          }
        }
      }
    }
  }
}

const GELU_SCALE = Math.sqrt(2 / Math.PI);

/**
 * gelu_new (tanh approximation): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
 * `tanhOut` (optional, length N) keeps the tanh of each element for geluBackward.
 */
export function geluForward(out: Float32Array, inp: Float32Array, N: number, tanhOut?: Float32Array): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    const th = tanhFast(GELU_SCALE * (x + 0.044715 * x * x * x));
    if (tanhOut) tanhOut[i] = th;
    out[i] = 0.5 * x * (1 + th);
  }
}

/** Accumulates dinp += gelu'(inp)·dout; `tanhIn` is geluForward's tanhOut (recomputed when omitted). */
export function geluBackward(
  dinp: Float32Array,
  inp: Float32Array,
  dout: Float32Array,
  N: number,
  tanhIn?: Float32Array,
): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i];
    const th = tanhIn ? tanhIn[i] : tanhFast(GELU_SCALE * (x + 0.044715 * x * x * x));
    const sech2 = 1 - th * th;
    const grad = 0.5 * (1 + th) + 0.5 * x * sech2 * GELU_SCALE * (1 + 3 * 0.044715 * x * x);
    dinp[i] += grad * dout[i];
  }
}

/** out = a + b elementwise (its backward passes dout to both inputs unchanged, done inline by the model). */
export function residualForward(out: Float32Array, a: Float32Array, b: Float32Array, N: number): void {
  for (let i = 0; i < N; i++) out[i] = a[i] + b[i];
}

/**
 * Softmax cross-entropy per position over logits[N, V]; targets < 0 are ignored (loss 0).
 * Returns the mean loss over counted positions. When dlogits is given, writes
 * dlogits = (softmax − onehot) · dscale for counted rows and 0 for ignored rows (it may alias logits).
 * `extraLogit` adds one more softmax column at that logit to every row (it gets no gradient): the
 * training head's stand-in for tokens outside its vocabulary; −∞ (the default) means none.
 */
export function crossEntropyForward(
  losses: Float32Array,
  logits: Float32Array,
  targets: Int32Array,
  N: number,
  V: number,
  dlogits: Float32Array | null = null,
  dscale = 0,
  extraLogit = Number.NEGATIVE_INFINITY,
): number {
  let total = 0;
  let count = 0;
  for (let n = 0; n < N; n++) {
    const row = n * V;
    const target = targets[n];
    if (target < 0) {
      losses[n] = 0;
      if (dlogits) dlogits.fill(0, row, row + V);
      continue;
    }
    let max = extraLogit;
    for (let v = 0; v < V; v++) if (logits[row + v] > max) max = logits[row + v];
    const targetLogit = logits[row + target];
    let sum = 0;
    if (dlogits) {
      // One exp per element: dlogits first holds exp(logit − max), scaled by 1/sum below.
      for (let v = 0; v < V; v++) {
        const e = expNeg(logits[row + v] - max);
        dlogits[row + v] = e;
        sum += e;
      }
    } else {
      for (let v = 0; v < V; v++) sum += expNeg(logits[row + v] - max);
    }
    if (extraLogit !== Number.NEGATIVE_INFINITY) sum += expNeg(extraLogit - max);
    const loss = Math.log(sum) + max - targetLogit;
    losses[n] = loss;
    total += loss;
    count++;
    if (dlogits) {
      const s = dscale / sum;
      for (let v = 0; v < V; v++) dlogits[row + v] *= s;
      dlogits[row + target] -= dscale;
    }
  }
  return count === 0 ? 0 : total / count;
}

/** Number of positions whose target is counted (≥ 0). */
export function countTargets(targets: Int32Array, N: number): number {
  let count = 0;
  for (let n = 0; n < N; n++) if (targets[n] >= 0) count++;
  return count;
}
