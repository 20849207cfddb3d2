// GGUF export: metadata, tokenizer and tensor table read back as written; tensors hold our weights in llama.cpp's [out, in] layout.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { exportGguf, GGUF_ALIGNMENT, GgmlType, parseGguf, readGgufHeader } from '../../src/io/gguf.js';
import { fixture, maxAbsDiff } from '../helpers/fixtures.js';
import { smallTokenizerData } from './small-tokenizer.js';

const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-gguf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let config: Readonly<GPTConfig>;
let params: Float32Array;
const tokenizerData = smallTokenizerData();

before(async () => {
  ({ config, params } = await loadModelDir(fixture('multi-v512')));
});

/** [rows, cols] row-major → [cols, rows]. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

describe('GGUF export of multi-v512', () => {
  it('metadata round-trips: gpt2 architecture, hyper-parameters, tokenizer', async () => {
    const file = join(tmp, 'tied.gguf');
    await exportGguf(file, { config, params, tokenizerData, name: 'multi-v512' });
    const g = await readGgufHeader(file);
    const m = g.metadata;
    assert.equal(g.version, 3);
    assert.equal(m.get('general.architecture'), 'gpt2');
    assert.equal(m.get('general.name'), 'multi-v512');
    assert.equal(m.get('general.file_type'), 0);
    assert.equal(m.get('general.alignment'), GGUF_ALIGNMENT);
    assert.equal(m.get('gpt2.context_length'), 64);
    assert.equal(m.get('gpt2.embedding_length'), 48);
    assert.equal(m.get('gpt2.feed_forward_length'), 192);
    assert.equal(m.get('gpt2.block_count'), 3);
    assert.equal(m.get('gpt2.attention.head_count'), 4);
    assert.equal(m.get('gpt2.attention.layer_norm_epsilon'), Math.fround(1e-5));
    assert.equal(m.get('tokenizer.ggml.model'), 'gpt2');
    assert.equal(m.get('tokenizer.ggml.pre'), 'gpt-2');
    assert.equal(m.get('tokenizer.ggml.bos_token_id'), 0);
    assert.equal(m.get('tokenizer.ggml.eos_token_id'), 0);
    const tokens = m.get('tokenizer.ggml.tokens') as string[];
    assert.equal(tokens.length, 512);
    for (const [token, id] of Object.entries(tokenizerData.vocab)) assert.equal(tokens[id], token);
    const types = m.get('tokenizer.ggml.token_type') as number[];
    assert.equal(types[511], 3, '<|endoftext|> is a control token');
    assert.equal(types.filter((t) => t === 1).length, 511);
    assert.deepEqual(
      m.get('tokenizer.ggml.merges'),
      tokenizerData.merges.map(([a, b]) => `${a} ${b}`),
    );
  });

  it('tensor table: layout GGUF names, reversed dims, F32, aligned offsets; data = our weights, Conv1D transposed', async () => {
    const g = await readGgufHeader(join(tmp, 'tied.gguf'));
    const layout = parameterLayout(config);
    assert.deepEqual(
      g.tensors.map((t) => t.name),
      layout.tensors.map((t) => t.ggufName),
    );
    assert.ok(!g.tensors.some((t) => t.name === 'output.weight'), 'tied model stores no output.weight');
    let worst = 0;
    for (const spec of layout.tensors) {
      const info = g.tensors.find((t) => t.name === spec.ggufName)!;
      assert.equal(info.type, GgmlType.F32);
      assert.equal(info.offset % GGUF_ALIGNMENT, 0);
      assert.equal((g.dataOffset + info.offset) % GGUF_ALIGNMENT, 0);
      const src = params.subarray(spec.offset, spec.offset + spec.size);
      const [rows, cols] = spec.shape;
      const expectedDims = spec.conv1d ? [rows, cols] : [...spec.shape].reverse();
      assert.deepEqual(info.dims, expectedDims, `${spec.ggufName} dims`);
      const expected = spec.conv1d ? transpose(src, rows, cols) : src;
      worst = Math.max(worst, maxAbsDiff(g.tensorData(spec.ggufName), expected));
    }
    console.log(`GGUF tensors vs parameters: largest abs diff ${worst}`);
    assert.equal(worst, 0);
    const qkv = g.tensors.find((t) => t.name === 'blk.0.attn_qkv.weight')!;
    assert.deepEqual(qkv.dims, [48, 144], 'ne[0] = n_embd (in), ne[1] = 3·n_embd (out)');
  });

  it('untied model stores output.weight as [V, C] rows', async () => {
    const untied: GPTConfig = { ...config, tieWordEmbeddings: false };
    const layout = parameterLayout(untied);
    const p = new Float32Array(layout.total);
    p.set(params);
    const head = layout.byName.get('lm_head.weight')!;
    for (let i = 0; i < head.size; i++) p[head.offset + i] = i * 1e-4;
    const file = join(tmp, 'untied.gguf');
    await exportGguf(file, { config: untied, params: p, tokenizerData });
    const g = await readGgufHeader(file);
    const out = g.tensors.find((t) => t.name === 'output.weight');
    assert.deepEqual(out?.dims, [48, 512]);
    assert.equal(maxAbsDiff(g.tensorData('output.weight'), p.subarray(head.offset)), 0);
  });

  it('rejects a tokenizer whose size differs from the model vocabulary', async () => {
    await assert.rejects(
      exportGguf(join(tmp, 'bad.gguf'), { config, params, tokenizerData: smallTokenizerData(300) }),
      /the tokenizer has no token with id 300 \(model vocab is 512\)/,
    );
  });

  it('the reader rejects truncated and non-GGUF files by name', () => {
    const bytes = new Uint8Array(readFileSync(join(tmp, 'tied.gguf')));
    assert.throws(() => parseGguf(bytes.subarray(0, 2000), 'cut.gguf'), /^Error: cut\.gguf: truncated/);
    assert.throws(() => parseGguf(new Uint8Array(64), 'zero.gguf'), /zero\.gguf: not a GGUF file/);
  });
});
