// Proves `tiny-llm export --format gguf` writes a GGUF llama.cpp can read as gpt2, and rejects bad formats.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readGgufHeader } from '../../src/io/gguf.js';
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

  it('an unknown format is a usage error (exit 2)', async () => {
    const r = await runCli([
      'export',
      '--model-dir',
      fixture('multi-v512'),
      '--format',
      'onnx',
      '--out',
      join(tmp, 'x'),
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--format must be gguf/);
  });
});
