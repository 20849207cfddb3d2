// GPT-2 for training: parameters in one flat buffer with named views, full forward with activations kept,
// and the backward pass that fills one flat gradient buffer of the same layout. Optional for training:
// dropout with seeded masks, and an LM head restricted to a subset of the vocabulary (see setTrainingVocab).
import { type GPTConfig, validateConfig } from './config.js';
import { applyMask, dropoutMask, maskedCopy } from './dropout.js';
import { type ModelViews, modelViews, type ParameterLayout, parameterLayout } from './layout.js';
import {
  matmulBackward,
  matmulForward,
  matmulTransposedBackward,
  matmulTransposedForward,
} from './matmul.js';
import {
  attentionBackward,
  attentionForward,
  countTargets,
  crossEntropyForward,
  encoderBackward,
  encoderForward,
  geluBackward,
  geluForward,
  layernormBackward,
  layernormForward,
  residualForward,
} from './ops.js';
import type { Rng } from './rng.js';

/** Dropout probabilities as GPT-2 names them: embeddings, attention probabilities, residual branches. */
export interface DropoutRates {
  embd: number;
  attn: number;
  resid: number;
}

export const NO_DROPOUT: Readonly<DropoutRates> = Object.freeze({ embd: 0, attn: 0, resid: 0 });

/** Dropout scale masks of one forward pass (0 or 1/(1−p) per element); null where that dropout is off. */
interface DropoutMasks {
  embd: Float32Array | null; // [B,T,C]
  attn: Float32Array[] | null; // L × [B,NH,T,T]
  attnResid: Float32Array[] | null; // L × [B,T,C]
  mlpResid: Float32Array[] | null; // L × [B,T,C]
}

/** The LM head over a subset of token ids: compact weights gathered from the full head each forward. */
interface HeadSubset {
  ids: Int32Array; // [K] token ids, ascending
  index: Int32Array; // [V] token id → row in the subset, −1 when absent
  weight: Float32Array; // [K, C]
  dweight: Float32Array; // [K, C]
}

/** Activations of one forward pass at batch B × time T (allocated once per shape, reused). */
interface Activations {
  B: number;
  T: number;
  encoded: Float32Array; // [B,T,C]
  ln1: Float32Array[]; // L × [B,T,C]
  ln1Mean: Float32Array[]; // L × [B,T]
  ln1Rstd: Float32Array[]; // L × [B,T]
  qkv: Float32Array[]; // L × [B,T,3C]
  atty: Float32Array[]; // L × [B,T,C]
  preatt: Float32Array[]; // L × [B,NH,T,T]
  att: Float32Array[]; // L × [B,NH,T,T]
  attproj: Float32Array[]; // L × [B,T,C]
  residual2: Float32Array[]; // L × [B,T,C]
  ln2: Float32Array[]; // L × [B,T,C]
  ln2Mean: Float32Array[]; // L × [B,T]
  ln2Rstd: Float32Array[]; // L × [B,T]
  fch: Float32Array[]; // L × [B,T,4C]
  fchGelu: Float32Array[]; // L × [B,T,4C]
  fchTanh: Float32Array[]; // L × [B,T,4C] the GELU's tanh, reused by its backward
  fcproj: Float32Array[]; // L × [B,T,C]
  residual3: Float32Array[]; // L × [B,T,C]
  lnf: Float32Array; // [B,T,C]
  lnfMean: Float32Array; // [B,T]
  lnfRstd: Float32Array; // [B,T]
  logits: Float32Array; // [B,T,V] (holds dlogits after a forward with targets)
  losses: Float32Array; // [B,T]
}

/** Scratch for the backward pass (gradients of activations), same shapes as one layer's activations. */
interface ActivationGrads {
  dresidual: Float32Array; // [B,T,C] gradient flowing down the residual stream
  dln: Float32Array; // [B,T,C]
  dqkv: Float32Array; // [B,T,3C]
  datty: Float32Array; // [B,T,C]
  dpreatt: Float32Array; // [B,NH,T,T]
  datt: Float32Array; // [B,NH,T,T]
  dfch: Float32Array; // [B,T,4C]
  dfchGelu: Float32Array; // [B,T,4C]
}

export class GPT2 {
  readonly config: Readonly<GPTConfig>;
  readonly layout: ParameterLayout;
  /** All parameters, in layout order. */
  readonly params: Float32Array;
  readonly views: ModelViews;
  /** Gradients in the same layout (allocated on the first backward). */
  grads: Float32Array | null = null;
  gradViews: ModelViews | null = null;
  private acts: Activations | null = null;
  private actGrads: ActivationGrads | null = null;
  private inputs: Int32Array | null = null;
  private targets: Int32Array | null = null;
  private lastB = 0;
  private lastT = 0;
  private hasTargets = false;
  private dropoutRates: DropoutRates = { ...NO_DROPOUT };
  private dropoutRng: Rng | null = null;
  private masks: DropoutMasks = { embd: null, attn: null, attnResid: null, mlpResid: null };
  private scratch: Float32Array | null = null; // [B,T,C] gradient through a residual-branch dropout
  private subset: HeadSubset | null = null;
  private subsetTargets: Int32Array | null = null;
  /** Logit of the softmax's "every other token" column in forwards with targets (−∞: no such column). */
  private restLogit = Number.NEGATIVE_INFINITY;
  /** When false (the default) dropout is skipped: inference and evaluation. */
  training = false;

  constructor(config: GPTConfig, params?: Float32Array) {
    this.config = validateConfig(config);
    this.layout = parameterLayout(this.config);
    if (params && params.length !== this.layout.total) {
      throw new Error(`parameter buffer has ${params.length} floats, the config needs ${this.layout.total}`);
    }
    this.params = params ?? new Float32Array(this.layout.total);
    this.views = modelViews(this.layout, this.params, this.config.nLayer);
  }

  /**
   * Logits of the last forward: [B,T,V], or [B,T,K] over the training vocabulary when one is set and the
   * forward had targets. After a forward with targets they hold dlogits instead.
   */
  get logits(): Float32Array {
    if (!this.acts) throw new Error('no forward pass yet');
    const width = this.subset && this.hasTargets ? this.subset.ids.length : this.config.vocabSize;
    return this.acts.logits.subarray(0, this.lastB * this.lastT * width);
  }

  /**
   * Dropout for training (applied only while `training` is true): probabilities per kind and the seeded
   * generator its masks come from. Rates must be in [0, 1).
   */
  setDropout(rates: DropoutRates, rng: Rng | null): void {
    for (const [k, p] of Object.entries(rates)) {
      if (!(p >= 0 && p < 1)) throw new RangeError(`dropout ${k} must be in [0, 1), got ${p}`);
    }
    if ((rates.embd > 0 || rates.attn > 0 || rates.resid > 0) && !rng)
      throw new Error('dropout needs a random generator');
    this.dropoutRates = { ...rates };
    this.dropoutRng = rng;
  }

  /**
   * Restricts the LM head of forward passes *with targets* to these token ids (a training speed-up: the
   * softmax runs over the corpus's own tokens only). Every target must be one of them; gradients reach only
   * those rows of the head. Forward passes without targets still give all V logits. null restores the
   * full head.
   * With `rest`, the softmax gets one more column standing for all V − K other tokens as if their logits
   * were 0 (their scale at initialisation, and they receive no gradient): its logit is log(V − K). The
   * training loss then approximates the full-vocabulary loss, and the model learns to lift the corpus's
   * tokens above the untouched rest instead of only above each other.
   */
  setTrainingVocab(ids: ArrayLike<number> | null, options: { rest?: boolean } = {}): void {
    this.restLogit = Number.NEGATIVE_INFINITY;
    if (!ids) {
      this.subset = null;
      return;
    }
    const { vocabSize: V, nEmbd: C } = this.config;
    const sorted = Int32Array.from(new Set(Array.from(ids))).sort();
    const index = new Int32Array(V).fill(-1);
    sorted.forEach((id, k) => {
      if (!(Number.isInteger(id) && id >= 0 && id < V))
        throw new RangeError(`training vocabulary id ${id} is outside [0, ${V})`);
      index[id] = k;
    });
    const K = sorted.length;
    if (options.rest === true && V > K) this.restLogit = Math.log(V - K);
    this.subset = { ids: sorted, index, weight: new Float32Array(K * C), dweight: new Float32Array(K * C) };
    this.acts = null;
  }

  /**
   * For a model whose vocabulary is already a compact training vocabulary (the trainer's): forwards with
   * targets add the softmax column standing for `tokens` tokens outside it at logit 0, as
   * setTrainingVocab's `rest` does (0 removes it). Forwards without targets are unchanged.
   */
  setRestColumn(tokens: number): void {
    if (!(Number.isInteger(tokens) && tokens >= 0))
      throw new RangeError(`rest tokens must be an integer >= 0`);
    this.restLogit = tokens > 0 ? Math.log(tokens) : Number.NEGATIVE_INFINITY;
  }

  /** The token ids of the restricted training head, or null when the full head is used. */
  get trainingVocab(): Int32Array | null {
    return this.subset ? this.subset.ids : null;
  }

  /**
   * Full forward over inputs[B,T]. With targets[B,T] (−1 = ignored) returns the mean cross-entropy and
   * leaves dlogits ready for backward(); without targets returns NaN and keeps the logits.
   */
  forward(inputs: Int32Array, B: number, T: number, targets: Int32Array | null = null): number {
    const { vocabSize: V, nEmbd: C } = this.config;
    const N = B * T;
    const a = this.trunk(inputs, B, T);
    const w = this.views;
    this.inputs = inputs;
    this.targets = targets;
    this.hasTargets = targets !== null;
    const subset = targets ? this.subset : null;
    if (!targets || !subset) matmulTransposedForward(a.logits, a.lnf, w.lmHead, N, C, V);
    if (!targets) return Number.NaN;
    // Mean over counted targets: each counted position's dloss/dlogits carries 1/count.
    const count = countTargets(targets, N);
    const dscale = count === 0 ? 0 : 1 / count;
    if (!subset)
      return crossEntropyForward(a.losses, a.logits, targets, N, V, a.logits, dscale, this.restLogit);
    // Restricted head: gather the subset's rows, map targets to subset rows, softmax over K columns.
    const K = subset.ids.length;
    for (let k = 0; k < K; k++)
      subset.weight.set(w.lmHead.subarray(subset.ids[k] * C, (subset.ids[k] + 1) * C), k * C);
    const mapped = this.ensureSubsetTargets(N);
    for (let n = 0; n < N; n++) {
      const t = targets[n];
      if (t < 0) mapped[n] = -1;
      else {
        const k = t < V ? subset.index[t] : -1;
        if (k < 0) throw new RangeError(`target ${t} at ${n} is not in the training vocabulary`);
        mapped[n] = k;
      }
    }
    matmulTransposedForward(a.logits, a.lnf, subset.weight, N, C, K);
    return crossEntropyForward(a.losses, a.logits, mapped, N, K, a.logits, dscale, this.restLogit);
  }

  /**
   * The final hidden states [B·T, C] (after ln_f) of inputs[B,T], without the LM head: for callers that
   * need logits of a few positions only (evaluation). Valid until the next forward.
   */
  forwardHidden(inputs: Int32Array, B: number, T: number): Float32Array {
    this.hasTargets = false;
    this.targets = null;
    return this.trunk(inputs, B, T).lnf.subarray(0, B * T * this.config.nEmbd);
  }

  /** Embeddings, blocks and ln_f over inputs[B,T] (dropout when training); activations kept for backward. */
  private trunk(inputs: Int32Array, B: number, T: number): Activations {
    const { vocabSize: V, nEmbd: C, nLayer: L, nHead: NH, nPositions, layerNormEpsilon: eps } = this.config;
    if (T > nPositions) throw new RangeError(`sequence length ${T} exceeds the context of ${nPositions}`);
    if (inputs.length < B * T) throw new RangeError(`inputs hold ${inputs.length} ids, need B·T = ${B * T}`);
    for (let i = 0; i < B * T; i++) {
      if (!(inputs[i] >= 0 && inputs[i] < V))
        throw new RangeError(`token id ${inputs[i]} at ${i} is outside [0, ${V})`);
    }
    const a = this.ensureActivations(B, T);
    const N = B * T;
    const w = this.views;
    const masks = this.drawMasks(B, T);
    encoderForward(a.encoded, inputs, w.wte, w.wpe, B, T, C);
    if (masks.embd) applyMask(a.encoded, masks.embd, N * C);
    let residual = a.encoded;
    for (let l = 0; l < L; l++) {
      const p = w.layers[l];
      layernormForward(a.ln1[l], a.ln1Mean[l], a.ln1Rstd[l], residual, p.ln1w, p.ln1b, N, C, eps);
      matmulForward(a.qkv[l], a.ln1[l], p.qkvw, p.qkvb, N, C, 3 * C);
      attentionForward(a.atty[l], a.preatt[l], a.att[l], a.qkv[l], B, T, C, NH, masks.attn?.[l]);
      matmulForward(a.attproj[l], a.atty[l], p.attprojw, p.attprojb, N, C, C);
      if (masks.attnResid) applyMask(a.attproj[l], masks.attnResid[l], N * C);
      residualForward(a.residual2[l], residual, a.attproj[l], N * C);
      layernormForward(a.ln2[l], a.ln2Mean[l], a.ln2Rstd[l], a.residual2[l], p.ln2w, p.ln2b, N, C, eps);
      matmulForward(a.fch[l], a.ln2[l], p.fcw, p.fcb, N, C, 4 * C);
      geluForward(a.fchGelu[l], a.fch[l], N * 4 * C, a.fchTanh[l]);
      matmulForward(a.fcproj[l], a.fchGelu[l], p.fcprojw, p.fcprojb, N, 4 * C, C);
      if (masks.mlpResid) applyMask(a.fcproj[l], masks.mlpResid[l], N * C);
      residualForward(a.residual3[l], a.residual2[l], a.fcproj[l], N * C);
      residual = a.residual3[l];
    }
    layernormForward(a.lnf, a.lnfMean, a.lnfRstd, residual, w.lnfw, w.lnfb, N, C, eps);
    this.lastB = B;
    this.lastT = T;
    return a;
  }

  /** Mean cross-entropy of inputs against targets without touching gradients (logits are consumed). */
  loss(inputs: Int32Array, targets: Int32Array, B: number, T: number): number {
    const { vocabSize: V } = this.config;
    const training = this.training;
    this.training = false;
    try {
      this.forward(inputs, B, T, null);
    } finally {
      this.training = training;
    }
    const a = this.acts!;
    return crossEntropyForward(a.losses, a.logits, targets, B * T, V);
  }

  /** Makes `buffer` (layout-sized, e.g. shared with another thread) the gradient buffer. */
  setGradientBuffer(buffer: Float32Array): void {
    if (buffer.length !== this.layout.total)
      throw new Error(`gradient buffer has ${buffer.length} floats, the config needs ${this.layout.total}`);
    this.grads = buffer;
    this.gradViews = modelViews(this.layout, buffer, this.config.nLayer);
  }

  /** Sets every gradient to zero (allocating the gradient buffer on first use). */
  zeroGrad(): void {
    if (!this.grads) {
      this.grads = new Float32Array(this.layout.total);
      this.gradViews = modelViews(this.layout, this.grads, this.config.nLayer);
    } else {
      this.grads.fill(0);
    }
  }

  /** Backpropagates the loss of the last forward (which must have had targets) into grads (accumulating). */
  backward(): void {
    if (!this.acts || !this.hasTargets || !this.inputs || !this.targets) {
      throw new Error('backward() needs a forward pass with targets first');
    }
    if (!this.grads) this.zeroGrad();
    const { vocabSize: V, nEmbd: C, nLayer: L, nHead: NH } = this.config;
    const B = this.lastB;
    const T = this.lastT;
    const N = B * T;
    const a = this.acts;
    const g = this.ensureActivationGrads();
    const w = this.views;
    const dw = this.gradViews!;
    const dlogits = a.logits;
    g.dresidual.fill(0, 0, N * C);
    g.dln.fill(0, 0, N * C);
    const subset = this.subset;
    if (subset) {
      const K = subset.ids.length;
      subset.dweight.fill(0);
      matmulTransposedBackward(g.dln, subset.dweight, dlogits, a.lnf, subset.weight, N, C, K);
      for (let k = 0; k < K; k++) {
        const row = subset.ids[k] * C;
        for (let c = 0; c < C; c++) dw.lmHead[row + c] += subset.dweight[k * C + c];
      }
    } else {
      matmulTransposedBackward(g.dln, dw.lmHead, dlogits, a.lnf, w.lmHead, N, C, V);
    }
    const masks = this.masks;
    const branch = this.ensureScratch(N * C);
    const lastResidual = L > 0 ? a.residual3[L - 1] : a.encoded;
    layernormBackward(g.dresidual, dw.lnfw, dw.lnfb, g.dln, lastResidual, w.lnfw, a.lnfMean, a.lnfRstd, N, C);
    for (let l = L - 1; l >= 0; l--) {
      const p = w.layers[l];
      const dp = dw.layers[l];
      const residualIn = l === 0 ? a.encoded : a.residual3[l - 1];
      // MLP branch: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))).
      g.dfchGelu.fill(0, 0, N * 4 * C);
      const dfcproj = masks.mlpResid ? branch : g.dresidual;
      if (masks.mlpResid) maskedCopy(branch, g.dresidual, masks.mlpResid[l], N * C);
      matmulBackward(g.dfchGelu, dp.fcprojw, dp.fcprojb, dfcproj, a.fchGelu[l], p.fcprojw, N, 4 * C, C);
      g.dfch.fill(0, 0, N * 4 * C);
      geluBackward(g.dfch, a.fch[l], g.dfchGelu, N * 4 * C, a.fchTanh[l]);
      g.dln.fill(0, 0, N * C);
      matmulBackward(g.dln, dp.fcw, dp.fcb, g.dfch, a.ln2[l], p.fcw, N, C, 4 * C);
      // dresidual (for residual2) = dresidual3 (pass-through) + LN2 backward.
      layernormBackward(
        g.dresidual,
        dp.ln2w,
        dp.ln2b,
        g.dln,
        a.residual2[l],
        p.ln2w,
        a.ln2Mean[l],
        a.ln2Rstd[l],
        N,
        C,
      );
      // Attention branch: residual2 = residualIn + attproj(attention(qkv(ln1(residualIn)))).
      g.datty.fill(0, 0, N * C);
      const dattproj = masks.attnResid ? branch : g.dresidual;
      if (masks.attnResid) maskedCopy(branch, g.dresidual, masks.attnResid[l], N * C);
      matmulBackward(g.datty, dp.attprojw, dp.attprojb, dattproj, a.atty[l], p.attprojw, N, C, C);
      g.dqkv.fill(0, 0, N * 3 * C);
      const m = masks.attn?.[l];
      attentionBackward(g.dqkv, g.dpreatt, g.datt, g.datty, a.qkv[l], a.att[l], B, T, C, NH, m);
      g.dln.fill(0, 0, N * C);
      matmulBackward(g.dln, dp.qkvw, dp.qkvb, g.dqkv, a.ln1[l], p.qkvw, N, C, 3 * C);
      layernormBackward(
        g.dresidual,
        dp.ln1w,
        dp.ln1b,
        g.dln,
        residualIn,
        p.ln1w,
        a.ln1Mean[l],
        a.ln1Rstd[l],
        N,
        C,
      );
    }
    if (masks.embd) applyMask(g.dresidual, masks.embd, N * C);
    encoderBackward(dw.wte, dw.wpe, g.dresidual, this.inputs, B, T, C);
  }

  /** Draws this forward's dropout masks (or none outside training / with zero rates). */
  private drawMasks(B: number, T: number): DropoutMasks {
    const { nEmbd: C, nLayer: L, nHead: NH } = this.config;
    const { embd, attn, resid } = this.dropoutRates;
    const rng = this.dropoutRng;
    const on = this.training && rng !== null;
    const N = B * T;
    const draw = (p: number, size: number, old: Float32Array | null | undefined) => {
      const mask = old && old.length >= size ? old : new Float32Array(size);
      dropoutMask(mask, size, p, rng!);
      return mask;
    };
    const prev = this.masks;
    this.masks = {
      embd: on && embd > 0 ? draw(embd, N * C, prev.embd) : null,
      attn:
        on && attn > 0
          ? Array.from({ length: L }, (_, l) => draw(attn, B * NH * T * T, prev.attn?.[l]))
          : null,
      attnResid:
        on && resid > 0 ? Array.from({ length: L }, (_, l) => draw(resid, N * C, prev.attnResid?.[l])) : null,
      mlpResid:
        on && resid > 0 ? Array.from({ length: L }, (_, l) => draw(resid, N * C, prev.mlpResid?.[l])) : null,
    };
    return this.masks;
  }

  private ensureScratch(size: number): Float32Array {
    if (!this.scratch || this.scratch.length < size) this.scratch = new Float32Array(size);
    return this.scratch;
  }

  private ensureSubsetTargets(size: number): Int32Array {
    if (!this.subsetTargets || this.subsetTargets.length < size) this.subsetTargets = new Int32Array(size);
    return this.subsetTargets;
  }

  private ensureActivations(B: number, T: number): Activations {
    const fits = (x: Activations) => B * T <= x.B * x.T && B * T * T <= x.B * x.T * x.T;
    if (this.acts && fits(this.acts)) return this.acts;
    const { vocabSize: V, nEmbd: C, nLayer: L, nHead: NH } = this.config;
    const N = B * T;
    const per = (size: number) => Array.from({ length: L }, () => new Float32Array(size));
    this.acts = {
      B,
      T,
      encoded: new Float32Array(N * C),
      ln1: per(N * C),
      ln1Mean: per(N),
      ln1Rstd: per(N),
      qkv: per(N * 3 * C),
      atty: per(N * C),
      preatt: per(B * NH * T * T),
      att: per(B * NH * T * T),
      attproj: per(N * C),
      residual2: per(N * C),
      ln2: per(N * C),
      ln2Mean: per(N),
      ln2Rstd: per(N),
      fch: per(N * 4 * C),
      fchGelu: per(N * 4 * C),
      fchTanh: per(N * 4 * C),
      fcproj: per(N * C),
      residual3: per(N * C),
      lnf: new Float32Array(N * C),
      lnfMean: new Float32Array(N),
      lnfRstd: new Float32Array(N),
      logits: new Float32Array(N * V),
      losses: new Float32Array(N),
    };
    this.actGrads = null;
    return this.acts;
  }

  private ensureActivationGrads(): ActivationGrads {
    if (this.actGrads) return this.actGrads;
    const { nEmbd: C, nHead: NH } = this.config;
    const a = this.acts!;
    const N = a.B * a.T;
    this.actGrads = {
      dresidual: new Float32Array(N * C),
      dln: new Float32Array(N * C),
      dqkv: new Float32Array(N * 3 * C),
      datty: new Float32Array(N * C),
      dpreatt: new Float32Array(a.B * NH * a.T * a.T),
      datt: new Float32Array(a.B * NH * a.T * a.T),
      dfch: new Float32Array(N * 4 * C),
      dfchGelu: new Float32Array(N * 4 * C),
    };
    return this.actGrads;
  }
}
