// Proves `tiny-llm export` writes a GGUF llama.cpp can read as gpt2 and an ONNX with the KV-cache interface, and rejects bad formats.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { GgmlType, readGgufHeader } from '../../src/io/gguf.js';
import { decodeModel } from '../../src/io/onnx/onnx-proto.js';
import { runCli } from '../helpers/cli.js';
import { fixture } from '../helpers/fixtures.js';
import { createTinyModel } from '../helpers/tiny-model.js';

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

  it('--quantize q8_0 writes Q8_0 matrices that generate reads back as q8_0, the tokens of quantising at load', {
    timeout: 120_000,
  }, async () => {
    // n_embd 32: every product and the embedding split into 32-blocks.
    const tiny = await createTinyModel({ nEmbd: 32, seed: 4 });
    try {
      const out = join(tmp, 'q8.gguf');
      const r = await runCli([
        'export',
        '--model-dir',
        tiny.dir,
        '--format',
        'gguf',
        '--quantize',
        'q8_0',
        '--out',
        out,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /GGUF Q8_0/);
      const gguf = await readGgufHeader(out);
      assert.equal(gguf.metadata.get('general.file_type'), 7);
      const q8 = gguf.tensors.filter((t) => t.type === GgmlType.Q8_0).map((t) => t.name);
      assert.deepEqual(q8, [
        'token_embd.weight',
        'blk.0.attn_qkv.weight',
        'blk.0.attn_output.weight',
        'blk.0.ffn_up.weight',
        'blk.0.ffn_down.weight',
      ]);
      const ask = ['--prompt-ids', '15496,995,13', '--temperature', '0', '--max-new-tokens', '10', '--json'];
      const [fromFile, atLoad] = await Promise.all([
        runCli(['generate', '--model-file', out, ...ask]),
        runCli(['generate', '--model-dir', tiny.dir, '--quantize', 'q8_0', ...ask]),
      ]);
      assert.equal(fromFile.code, 0, fromFile.stderr);
      assert.equal(atLoad.code, 0, atLoad.stderr);
      assert.deepEqual(JSON.parse(fromFile.stdout).ids, JSON.parse(atLoad.stdout).ids);
      assert.equal(JSON.parse(fromFile.stdout).ids.length, 10);
    } finally {
      tiny.remove();
    }
  });

  it('bad --quantize values and a --model-file that is not a GGUF file are usage errors', async () => {
    const base = ['export', '--model-dir', fixture('multi-v512'), '--out', join(tmp, 'x')];
    const bad = await runCli([...base, '--format', 'gguf', '--quantize', 'q4_0']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--quantize must be q8_0 or f16, got "q4_0"/);
    const onnx = await runCli([...base, '--format', 'onnx', '--quantize', 'q8_0']);
    assert.equal(onnx.code, 2);
    assert.match(onnx.stderr, /--quantize applies to --format gguf only/);
    const gen = await runCli(['generate', '--model-file', fixture('multi-v512'), '--prompt-ids', '1']);
    assert.equal(gen.code, 2);
    assert.match(gen.stderr, /--model-file must name a \.gguf file/);
  });
});
