// Proves `tiny-llm export` writes a GGUF llama.cpp can read as gpt2 and an ONNX with the KV-cache interface, and rejects bad formats.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readGgufHeader } from '../../src/io/gguf.js';
import { decodeModel } from '../../src/io/onnx/onnx-proto.js';
import { runCli } from '../helpers/cli.js';
import { fixture } from '../helpers/fixtures.js';

describe('tiny-llm export', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-export-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('exports the Python-trained checkpoint as GGUF with gpt2 metadata and every tensor', async () => {
    const out = join(tmp, 'model.gguf');
    const r = await runCli([
      'export',
      '--model-dir',
      fixture('seed-recipe-trained'),
      '--format',
      'gguf',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const gguf = await readGgufHeader(out);
    assert.equal(gguf.metadata.get('general.architecture'), 'gpt2');
    assert.equal(gguf.metadata.get('tokenizer.ggml.model'), 'gpt2');
    const names = gguf.tensors.map((t) => t.name);
    for (const name of [
      'token_embd.weight',
      'position_embd.weight',
      'blk.0.attn_qkv.weight',
      'output_norm.bias',
    ]) {
      assert.ok(names.includes(name), `${name} missing from ${names.join(', ')}`);
    }
  });

  it('exports multi-v512 as ONNX (no tokenizer needed) with the with-past inputs and outputs', async () => {
    const out = join(tmp, 'model.onnx');
    const r = await runCli([
      'export',
      '--model-dir',
      fixture('multi-v512'),
      '--format',
      'onnx',
      '--out',
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const { graph } = decodeModel(new Uint8Array(readFileSync(out)));
    assert.deepEqual(
      graph.inputs.map((v) => v.name),
      ['input_ids', 'past_key', 'past_value'],
    );
    assert.deepEqual(
      graph.outputs.map((v) => v.name),
      ['logits', 'present_key', 'present_value'],
    );
  });

  it('an unknown format is a usage error (exit 2)', async () => {
    const r = await runCli([
      'export',
      '--model-dir',
      fixture('multi-v512'),
      '--format',
      'tflite',
      '--out',
      join(tmp, 'x'),
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--format must be gguf or onnx, got "tflite"/);
  });
});
