// Token sampling as a pure pipeline: repetition penalty → temperature → top-k → top-p → draw with a given coin.
// Order and semantics follow Hugging Face's logits processors/warpers; temperature 0 means greedy argmax.
// The scans over the vocabulary (argmax, top-k) run in the WebAssembly SIMD kernels when they are available.
import { wasmArena } from '../engine/wasm/runtime.js';

export interface SamplingParams {
  /** 0 → greedy; otherwise logits are divided by it. */
  temperature: number;
  /** Keep only the k most likely tokens; 0 disables. */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches topP; 1 disables. */
  topP: number;
  /** HF repetition penalty over the prompt and generated ids; 1 disables. */
  repetitionPenalty: number;
}

/** Reusable scratch so sampling allocates nothing per token. */
export class SamplerScratch {
  readonly ids: Int32Array;
  readonly values: Float64Array;
  penalised: Float32Array | null = null;
  constructor(readonly vocabSize: number) {
    this.ids = new Int32Array(vocabSize);
    this.values = new Float64Array(vocabSize);
  }
}

/** Index of the largest logit (the lowest index wins ties, as torch.argmax does). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let bestValue = logits[0];
  for (let i = 1; i < logits.length; i++) {
    if (logits[i] > bestValue) {
      bestValue = logits[i];
      best = i;
    }
  }
  return best;
}

/** HF RepetitionPenaltyLogitsProcessor: for each distinct seen id, logit < 0 ? logit·p : logit/p (in place). */
export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  const done = new Set<number>();
  for (const id of seen) {
    if (done.has(id) || id < 0 || id >= logits.length) continue;
    done.add(id);
    const x = logits[id];
    logits[id] = x < 0 ? x * penalty : x / penalty;
  }
}

/**
 * Picks the next token. `coin` is a uniform number in [0, 1) supplied by the caller's seeded RNG.
 * `seen` holds the ids the repetition penalty applies to. `logits` is not modified.
 */
export function sampleToken(
  logits: Float32Array,
  params: SamplingParams,
  coin: number,
  scratch: SamplerScratch,
  seen: Iterable<number> = [],
): number {
  let scores = logits;
  if (params.repetitionPenalty !== 1) {
    if (!scratch.penalised || scratch.penalised.length !== logits.length) {
      scratch.penalised = new Float32Array(logits.length);
    }
    scratch.penalised.set(logits);
    applyRepetitionPenalty(scratch.penalised, seen, params.repetitionPenalty);
    scores = scratch.penalised;
  }
  const arena = wasmArena();
  if (params.temperature === 0) return arena && scores.length > 0 ? arena.argmax(scores) : argmax(scores);
  const V = scores.length;
  const k = params.topK > 0 && params.topK < V ? params.topK : V;
  let count = k;
  if (arena && k < V) arena.topK(scores, k, scratch.ids, scratch.values);
  else count = selectTop(scores, k, scratch);
  return drawCandidate(count, params, coin, scratch);
}

/**
 * How many of the largest logits sampleFromTop needs for these parameters (1 for greedy, top-k otherwise),
 * or 0 when the full logits are needed (no top-k, or a repetition penalty that changes them first).
 */
export function topCountNeeded(params: SamplingParams): number {
  if (params.repetitionPenalty !== 1) return 0;
  if (params.temperature === 0) return 1;
  return Math.max(params.topK, 0);
}

/**
 * sampleToken when only the k = topCountNeeded(params) largest logits are known: scratch.ids/values hold
 * them sorted descending (ties to the lower id), as InferenceSession.next writes them. Returns the
 * token sampleToken returns on the full logits with the same coin.
 */
export function sampleFromTop(params: SamplingParams, coin: number, scratch: SamplerScratch): number {
  if (params.temperature === 0) return scratch.ids[0];
  return drawCandidate(params.topK, params, coin, scratch);
}

/** Temperature softmax, nucleus cut and the draw over `count` candidates sorted descending in scratch. */
function drawCandidate(count: number, params: SamplingParams, coin: number, scratch: SamplerScratch): number {
  const { ids, values } = scratch;
  // Softmax over the kept candidates (sorted descending) at the given temperature. A temperature whose
  // reciprocal overflows, or a top score that is not finite (a penalty that pushed it to infinity), is the
  // limit of the distribution: all mass on the first candidate, as greedy decoding picks it.
  const invT = 1 / params.temperature;
  const max = values[0];
  if (!Number.isFinite(invT) || !Number.isFinite(max) || count <= 1) return ids[0];
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const e = Math.exp((values[i] - max) * invT);
    values[i] = e;
    sum += e;
  }
  // Nucleus: keep tokens while the mass before them is below topP (at least one).
  let kept = count;
  if (params.topP < 1) {
    const limit = params.topP * sum;
    let cumulative = 0;
    for (let i = 0; i < count; i++) {
      if (cumulative >= limit && i > 0) {
        kept = i;
        break;
      }
      cumulative += values[i];
    }
    sum = 0;
    for (let i = 0; i < kept; i++) sum += values[i];
  }
  // Every kept weight is finite and the first is 1, so the sum is at least 1; this guards the draw anyway.
  if (!(sum >= 1 && Number.isFinite(sum))) return ids[0];
  const target = coin * sum;
  let cumulative = 0;
  for (let i = 0; i < kept; i++) {
    cumulative += values[i];
    if (target < cumulative) return ids[i];
  }
  return ids[kept - 1];
}

/**
 * Writes the k highest scores (ties: lower id first) into scratch.ids/values sorted descending; returns k.
 * For k ≪ V a bounded min-heap keeps this O(V log k); k = V sorts everything.
 */
function selectTop(scores: Float32Array, k: number, scratch: SamplerScratch): number {
  const { ids, values } = scratch;
  const V = scores.length;
  if (k >= V) {
    for (let i = 0; i < V; i++) ids[i] = i;
    const order = Array.from(ids.subarray(0, V));
    order.sort((a, b) => scores[b] - scores[a] || a - b);
    for (let i = 0; i < V; i++) {
      ids[i] = order[i];
      values[i] = scores[order[i]];
    }
    return V;
  }
  // Min-heap of size k over (value, id), the root is the weakest kept candidate.
  let size = 0;
  const weaker = (a: number, b: number) =>
    values[a] < values[b] || (values[a] === values[b] && ids[a] > ids[b]);
  const swap = (a: number, b: number) => {
    const ti = ids[a];
    ids[a] = ids[b];
    ids[b] = ti;
    const tv = values[a];
    values[a] = values[b];
    values[b] = tv;
  };
  const siftDown = (start: number, n: number) => {
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && weaker(l, m)) m = l;
      if (r < n && weaker(r, m)) m = r;
      if (m === i) return;
      swap(i, m);
      i = m;
    }
  };
  for (let v = 0; v < V; v++) {
    const s = scores[v];
    if (size < k) {
      ids[size] = v;
      values[size] = s;
      let i = size++;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (!weaker(i, parent)) break;
        swap(i, parent);
        i = parent;
      }
    } else if (s > values[0]) {
      ids[0] = v;
      values[0] = s;
      siftDown(0, size);
    }
  }
  // Heap-sort in place: repeatedly move the weakest to the end → descending order.
  for (let n = size - 1; n > 0; n--) {
    swap(0, n);
    siftDown(0, n);
  }
  return size;
}
