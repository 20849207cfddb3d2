// KV-cache inference, the engine's public entry: weights (infer/weights.ts), a sequence's session
// (infer/session.ts) and the reference forward pass they run (infer/forward.ts).
export { findHotRows, type HotRows } from './head/hot-rows.js';
export type { LmHead } from './head/lm-head.js';
export type { ScreenRows } from './head/screen.js';
export { BatchDecoder, type BatchSequence } from './infer/batch.js';
export { KvCache } from './infer/forward.js';
export { meanTokenLoss, type SequenceLoss } from './infer/loss.js';
export { floatAllocator, InferenceSession, type InferenceSessionOptions } from './infer/session.js';
export {
  InferenceWeights,
  type InferenceWeightsOptions,
  type LayerWeights,
  type ModelSource,
  type SharedHead,
  type TensorData,
} from './infer/weights.js';
