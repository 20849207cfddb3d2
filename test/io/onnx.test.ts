// ONNX export without a runtime: the protobuf decodes, the interface is the golden with-past one, every weight
// is stored byte for byte under its HF name, the graph is well formed (inputs defined before use), bad input errors.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { exportOnnx, ONNX_OPSET, onnxBytes } from '../../src/io/onnx/gpt2-onnx.js';
import { decodeModel, OnnxDataType, type OnnxModel } from '../../src/io/onnx/onnx-proto.js';
import { ProtoError, ProtoWriter, readFields, readInts } from '../../src/io/onnx/protobuf.js';
import { fixture, repoRoot } from '../helpers/fixtures.js';

const goldenOnnx = join(repoRoot, '..', 'shared', 'golden', 'seed-tiny', 'seed-tiny-with-past.onnx');
const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-onnx-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Ops of the default ONNX domain that exist at opset 17 with the signatures used here. */
const OPSET17_OPS = new Set([
  'Add',
  'Concat',
  'Gather',
  'Gemm',
  'LayerNormalization',
  'LessOrEqual',
  'MatMul',
  'Mul',
  'Range',
  'Reshape',
  'Shape',
  'Softmax',
  'Split',
  'Tanh',
  'Transpose',
  'Unsqueeze',
  'Where',
]);

describe('protobuf wire format', () => {
  it('ints (negative and above 2^32), floats, strings and packed lists read back as written', () => {
    const bytes = new ProtoWriter()
      .int(1, -1)
      .int(2, 2 ** 40 + 3)
      .float(3, 0.5)
      .string(4, 'héllo')
      .packedInts(5, [0, 300, -2])
      .toBytes();
    const f = readFields(bytes);
    assert.deepEqual(readInts(f, 1), [-1]);
    assert.deepEqual(readInts(f, 2), [2 ** 40 + 3]);
    assert.equal(new DataView(f[2].bytes!.buffer, f[2].bytes!.byteOffset).getFloat32(0, true), 0.5);
    assert.equal(new TextDecoder().decode(f[3].bytes), 'héllo');
    assert.deepEqual(readInts(f, 5), [0, 300, -2]);
    assert.equal(new ProtoWriter().int(1, -1).toBytes().length, 11, 'a negative int64 is a ten-byte varint');
  });

  it('truncated or malformed bytes are a ProtoError, not a crash', () => {
    const good = new ProtoWriter().string(1, 'abcdef').toBytes();
    assert.throws(() => readFields(good.subarray(0, 4)), ProtoError);
    assert.throws(() => readFields(Uint8Array.of(0x0b)), /unsupported wire type 3/);
    assert.throws(() => decodeModel(Uint8Array.of(0x08, 0x08)), /no graph/);
  });
});

describe('ONNX export of multi-v512 (3 layers, 4 heads)', () => {
  let config: Readonly<GPTConfig>;
  let params: Float32Array;
  let model: OnnxModel;
  before(async () => {
    ({ config, params } = await loadModelDir(fixture('multi-v512')));
    const file = join(tmp, 'multi.onnx');
    await exportOnnx(file, { config, params, name: 'multi-v512' });
    model = decodeModel(new Uint8Array(readFileSync(file)));
  });

  it('has the with-past interface: names, dtypes and symbolic axes', () => {
    const D = config.nEmbd / config.nHead;
    const [L, H, V] = [config.nLayer, config.nHead, config.vocabSize];
    assert.equal(model.opset, ONNX_OPSET);
    assert.equal(model.graph.name, 'multi-v512');
    assert.deepEqual(model.graph.inputs, [
      { name: 'input_ids', elemType: OnnxDataType.INT64, dims: ['b', 's'] },
      { name: 'past_key', elemType: OnnxDataType.FLOAT, dims: [L, 'b', H, 'p', D] },
      { name: 'past_value', elemType: OnnxDataType.FLOAT, dims: [L, 'b', H, 'p', D] },
    ]);
    assert.deepEqual(model.graph.outputs, [
      { name: 'logits', elemType: OnnxDataType.FLOAT, dims: ['b', 's', V] },
      { name: 'present_key', elemType: OnnxDataType.FLOAT, dims: [L, 'b', H, 't', D] },
      { name: 'present_value', elemType: OnnxDataType.FLOAT, dims: [L, 'b', H, 't', D] },
    ]);
  });

  it('stores every layout tensor as a float32 initializer holding the weights bytes (Conv1D [in, out])', () => {
    const layout = parameterLayout(config);
    const inits = new Map(model.graph.initializers.map((t) => [t.name, t]));
    let maxDiff = 0;
    for (const spec of layout.tensors) {
      const t = inits.get(spec.hfName);
      assert.ok(t, `${spec.hfName} missing`);
      assert.equal(t.dataType, OnnxDataType.FLOAT);
      assert.deepEqual(t.dims, spec.shape, spec.hfName);
      const stored = new Float32Array(t.raw.slice().buffer);
      const expected = params.subarray(spec.offset, spec.offset + spec.size);
      assert.equal(stored.length, expected.length, spec.hfName);
      for (let i = 0; i < stored.length; i++) maxDiff = Math.max(maxDiff, Math.abs(stored[i] - expected[i]));
    }
    console.log(`initializers vs weights: ${layout.tensors.length} tensors, largest difference ${maxDiff}`);
    assert.equal(maxDiff, 0);
  });

  it('is a well-formed graph: standard opset-17 ops, every input defined before use, the outputs produced', () => {
    const defined = new Set([
      ...model.graph.inputs.map((v) => v.name),
      ...model.graph.initializers.map((t) => t.name),
    ]);
    for (const n of model.graph.nodes) {
      assert.ok(OPSET17_OPS.has(n.op), `unexpected op ${n.op}`);
      for (const i of n.inputs) assert.ok(defined.has(i), `${n.name} (${n.op}) uses undefined ${i}`);
      for (const o of n.outputs) {
        assert.ok(!defined.has(o), `${o} is defined twice`);
        defined.add(o);
      }
    }
    for (const o of model.graph.outputs) assert.ok(defined.has(o.name), `output ${o.name} is not produced`);
    const layerNorms = model.graph.nodes.filter((n) => n.op === 'LayerNormalization');
    assert.equal(layerNorms.length, 2 * config.nLayer + 1);
    for (const n of layerNorms) {
      const eps = n.attrs.epsilon;
      assert.ok(eps?.kind === 'float' && eps.value === Math.fround(config.layerNormEpsilon));
    }
  });

  it('an untied LM head is exported as lm_head.weight and used by the logits', () => {
    const untied = { ...config, tieWordEmbeddings: false };
    const extra = new Float32Array(parameterLayout(untied).total);
    extra.set(params);
    const m = decodeModel(onnxBytes({ config: untied, params: extra }));
    const gemm = m.graph.nodes.find((n) => n.op === 'Gemm');
    assert.deepEqual(gemm?.inputs.slice(1), ['lm_head.weight']);
    const tied = model.graph.nodes.find((n) => n.op === 'Gemm');
    assert.deepEqual(tied?.inputs.slice(1), ['transformer.wte.weight']);
  });

  it('a parameter buffer of the wrong size is refused with the sizes', () => {
    assert.throws(
      () => onnxBytes({ config, params: params.subarray(1) }),
      /params has \d+ floats, the layout needs \d+/,
    );
  });
});

describe('ONNX export of seed-tiny next to the golden ONNX', () => {
  it('inputs and outputs match the golden file (names, dtypes, axes) and so does the opset', {
    skip: !existsSync(goldenOnnx) && 'the golden ONNX (../shared/golden) is not beside this checkout',
  }, async () => {
    const { config, params } = await loadModelDir(fixture('seed-tiny'));
    const ours = decodeModel(onnxBytes({ config, params }));
    const golden = decodeModel(new Uint8Array(readFileSync(goldenOnnx)));
    assert.deepEqual(ours.graph.inputs, golden.graph.inputs);
    assert.deepEqual(ours.graph.outputs, golden.graph.outputs);
    assert.equal(ours.opset, golden.opset);
    assert.equal(ours.irVersion, golden.irVersion);
  });
});
