// ONNX export of our GPT-2 with an explicit KV cache, with the golden seed-tiny-with-past.onnx interface:
// input_ids [b,s] int64, past_key/past_value [L,b,H,p,D] → logits [b,s,V], present_key/present_value [L,b,H,t,D].
import type { GPTConfig } from '../../engine/config.js';
import { validateConfig } from '../../engine/config.js';
import { parameterLayout } from '../../engine/layout.js';
import { writeFileAtomic } from '../atomic.js';
import {
  type AttrValue,
  encodeModel,
  type OnnxNode,
  type OnnxTensor,
  OnnxDataType as T,
  type ValueInfo,
} from './onnx-proto.js';

/** Opset 17: the first with LayerNormalization; the golden graph uses the same. */
export const ONNX_OPSET = 17;
/** IR version 8 (what opset 17 exporters write, and the golden file's). */
export const ONNX_IR_VERSION = 8;

export const ONNX_INPUTS = ['input_ids', 'past_key', 'past_value'] as const;
export const ONNX_OUTPUTS = ['logits', 'present_key', 'present_value'] as const;

export interface OnnxExportOptions {
  config: GPTConfig;
  /** All parameters in layout order (src/engine/layout.ts). */
  params: Float32Array;
  /** Graph name stored in the file (default "tiny-llm"). */
  name?: string;
}

/** Score given to masked (future) positions: float32's lowest value, as transformers does. */
const MASKED_SCORE = -3.4028234663852886e38;

/** Accumulates nodes and constants with unique names. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private counter = 0;

  /** Adds a node with one output (named after the op) and returns that name. */
  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, name?: string): string {
    const out = name ?? `/${op}_${this.counter++}`;
    this.nodes.push({ op, inputs, outputs: [out], name: `${op}_${this.nodes.length}`, attrs });
    return out;
  }

  /** Adds a node with several outputs. */
  opN(op: string, inputs: string[], n: number, attrs: Record<string, AttrValue> = {}): string[] {
    const outs = Array.from({ length: n }, (_, i) => `/${op}_${this.counter}_${i}`);
    this.counter++;
    this.nodes.push({ op, inputs, outputs: outs, name: `${op}_${this.nodes.length}`, attrs });
    return outs;
  }

  initializer(name: string, dataType: number, dims: number[], raw: Uint8Array): string {
    this.initializers.push({ name, dataType, dims, raw });
    return name;
  }

  /** An int64 constant initializer (a scalar when dims is []). */
  ints(values: number[], dims: number[] = [values.length]): string {
    const raw = new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer);
    return this.initializer(`/const_i64_${this.counter++}`, T.INT64, dims, raw);
  }

  /** A float32 scalar constant initializer. */
  float(value: number): string {
    const raw = new Uint8Array(Float32Array.of(value).buffer);
    return this.initializer(`/const_f32_${this.counter++}`, T.FLOAT, [], raw);
  }
}

/** Builds the model's bytes (see exportOnnx). */
export function onnxBytes(options: OnnxExportOptions): Uint8Array {
  const config = validateConfig(options.config);
  const layout = parameterLayout(config);
  const { params } = options;
  // raw_data is little-endian; typed arrays use the machine's byte order.
  if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) {
    throw new Error('ONNX export: this writer needs a little-endian machine');
  }
  if (params.length !== layout.total) {
    throw new Error(`ONNX export: params has ${params.length} floats, the layout needs ${layout.total}`);
  }
  const { vocabSize: V, nEmbd: C, nLayer: L, nHead: H, layerNormEpsilon: eps } = config;
  const D = C / H;
  const g = new GraphBuilder();

  // Every tensor of the layout table becomes a float32 initializer under its HF name, in HF's shape:
  // Conv1D weights stay [in, out], which is MatMul's right operand as is.
  const bytes = new Uint8Array(params.buffer, params.byteOffset, params.byteLength);
  for (const t of layout.tensors) {
    g.initializer(t.hfName, T.FLOAT, t.shape, bytes.subarray(t.offset * 4, (t.offset + t.size) * 4));
  }
  const w = (name: string) => {
    if (!layout.byName.has(name)) throw new Error(`ONNX export: layout has no tensor ${name}`);
    return name;
  };

  // Positions: past length p from past_key's shape, new positions p .. p+s-1; keys 0 .. p+s-1.
  const idsShape = g.op('Shape', ['input_ids']);
  const s = g.op('Gather', [idsShape, g.ints([1], [])], { axis: { kind: 'int', value: 0 } });
  const p = g.op('Gather', [g.op('Shape', ['past_key']), g.ints([3], [])], {
    axis: { kind: 'int', value: 0 },
  });
  const total = g.op('Add', [p, s]);
  const one = g.ints([1], []);
  const positions = g.op('Range', [p, total, one]); // [s]
  const keyPositions = g.op('Range', [g.ints([0], []), total, one]); // [t]
  // allowed[i, j] = key j is not after query i (causal): [s, t].
  const queryColumn = g.op('Unsqueeze', [positions, g.ints([1])]);
  const allowed = g.op('LessOrEqual', [keyPositions, queryColumn]);

  let x = g.op('Add', [
    g.op('Gather', [w('transformer.wte.weight'), 'input_ids'], { axis: { kind: 'int', value: 0 } }),
    g.op('Gather', [w('transformer.wpe.weight'), positions], { axis: { kind: 'int', value: 0 } }),
  ]); // [b, s, C]

  const layerNorm = (input: string, prefix: string) =>
    g.op('LayerNormalization', [input, w(`${prefix}.weight`), w(`${prefix}.bias`)], {
      axis: { kind: 'int', value: -1 },
      epsilon: { kind: 'float', value: eps },
    });
  const linear = (input: string, prefix: string) =>
    g.op('Add', [g.op('MatMul', [input, w(`${prefix}.weight`)]), w(`${prefix}.bias`)]);

  const headsShape = g.ints([0, 0, H, D]); // [b, s, C] → [b, s, H, D] (0 keeps the input's dim)
  const mergedShape = g.ints([0, 0, C]);
  const splitSizes = g.ints([C, C, C]);
  const scale = g.float(1 / Math.sqrt(D));
  const masked = g.float(MASKED_SCORE);
  const half = g.float(0.5);
  const unit = g.float(1);
  const geluCubic = g.float(0.044715);
  const geluScale = g.float(Math.sqrt(2 / Math.PI));
  const axis0 = g.ints([0]);
  const toHeads = (t: string) =>
    g.op('Transpose', [g.op('Reshape', [t, headsShape])], { perm: { kind: 'ints', value: [0, 2, 1, 3] } });
  const presentKeys: string[] = [];
  const presentValues: string[] = [];

  for (let l = 0; l < L; l++) {
    const h = `transformer.h.${l}`;
    const qkv = linear(layerNorm(x, `${h}.ln_1`), `${h}.attn.c_attn`); // [b, s, 3C]
    const [q, k, v] = g.opN('Split', [qkv, splitSizes], 3, { axis: { kind: 'int', value: -1 } });
    const layerIndex = g.ints([l], []);
    const gather0 = { axis: { kind: 'int', value: 0 } } as const;
    const keys = g.op('Concat', [g.op('Gather', ['past_key', layerIndex], gather0), toHeads(k)], {
      axis: { kind: 'int', value: 2 },
    }); // [b, H, t, D]
    const values = g.op('Concat', [g.op('Gather', ['past_value', layerIndex], gather0), toHeads(v)], {
      axis: { kind: 'int', value: 2 },
    });
    presentKeys.push(g.op('Unsqueeze', [keys, axis0]));
    presentValues.push(g.op('Unsqueeze', [values, axis0]));
    const keysT = g.op('Transpose', [keys], { perm: { kind: 'ints', value: [0, 1, 3, 2] } });
    const scores = g.op('Mul', [g.op('MatMul', [toHeads(q), keysT]), scale]); // [b, H, s, t]
    const probs = g.op('Softmax', [g.op('Where', [allowed, scores, masked])], {
      axis: { kind: 'int', value: -1 },
    });
    const attended = g.op('Transpose', [g.op('MatMul', [probs, values])], {
      perm: { kind: 'ints', value: [0, 2, 1, 3] },
    }); // [b, s, H, D]
    const merged = g.op('Reshape', [attended, mergedShape]);
    x = g.op('Add', [x, linear(merged, `${h}.attn.c_proj`)]);

    // MLP with GELU (tanh form): 0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³))).
    const u = linear(layerNorm(x, `${h}.ln_2`), `${h}.mlp.c_fc`);
    const cube = g.op('Mul', [u, g.op('Mul', [u, u])]);
    const inner = g.op('Mul', [g.op('Add', [u, g.op('Mul', [cube, geluCubic])]), geluScale]);
    const gelu = g.op('Mul', [g.op('Mul', [u, half]), g.op('Add', [g.op('Tanh', [inner]), unit])]);
    x = g.op('Add', [x, linear(gelu, `${h}.mlp.c_proj`)]);
  }

  // LM head [V, C] (tied to wte or not) through Gemm with transB on [b·s, C] rows, then back to [b, s, V].
  const final = layerNorm(x, 'transformer.ln_f');
  const rows = g.op('Reshape', [final, g.ints([-1, C])]);
  const head = config.tieWordEmbeddings ? w('transformer.wte.weight') : w('lm_head.weight');
  const flatLogits = g.op('Gemm', [rows, head], { transB: { kind: 'int', value: 1 } });
  const logitsShape = g.op('Concat', [idsShape, g.ints([V])], { axis: { kind: 'int', value: 0 } });
  g.op('Reshape', [flatLogits, logitsShape], {}, 'logits');
  const cat0 = { axis: { kind: 'int', value: 0 } } as const;
  g.op('Concat', presentKeys, cat0, 'present_key');
  g.op('Concat', presentValues, cat0, 'present_value');

  const cache = (name: string, len: string): ValueInfo => ({
    name,
    elemType: T.FLOAT,
    dims: [L, 'b', H, len, D],
  });
  return encodeModel({
    irVersion: ONNX_IR_VERSION,
    producerName: 'tiny-llm',
    producerVersion: 'gpt2-with-past',
    opset: ONNX_OPSET,
    graph: {
      name: options.name ?? 'tiny-llm',
      nodes: g.nodes,
      initializers: g.initializers,
      inputs: [
        { name: 'input_ids', elemType: T.INT64, dims: ['b', 's'] },
        cache('past_key', 'p'),
        cache('past_value', 'p'),
      ],
      outputs: [
        { name: 'logits', elemType: T.FLOAT, dims: ['b', 's', V] },
        cache('present_key', 't'),
        cache('present_value', 't'),
      ],
    },
  });
}

/** Writes the model as an ONNX file (atomically). */
export async function exportOnnx(file: string, options: OnnxExportOptions): Promise<void> {
  await writeFileAtomic(file, onnxBytes(options));
}
