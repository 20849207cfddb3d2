// The built server (`bin/tiny-llm.js serve`) on GGUF files and with --quantize q8_0: it serves a .gguf as the directory it came from, says the weights' format, serves Q8_0 as Q8_0, and refuses a broken file at start with its name and the reason.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { exportGguf } from '../../src/io/gguf.js';
import { assertBuildCurrent, type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { repoRoot } from '../helpers/fixtures.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';
import { request } from './harness.js';

/** The same seeded request for every server: the texts must agree where the weights do. */
const ASK = { prompt: 'The quick brown fox', max_tokens: 24, seed: 7, temperature: 0.8 };

async function generated(server: BuiltServer): Promise<string> {
  const res = await request(server.url, { method: 'POST', url: '/v1/completions', payload: ASK });
  assert.equal(res.statusCode, 200, res.body);
  return res.json().choices[0].text;
}

async function formatOf(server: BuiltServer): Promise<{ api: string; v1: string }> {
  const api = (await request(server.url, '/api/model')).json();
  const v1 = (await request(server.url, '/v1/models')).json();
  return { api: api.format, v1: v1.data[0].format };
}

/** Runs the built CLI's serve on `args` and waits for its exit (it must not start serving). */
function serveExit(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(repoRoot, 'bin', 'tiny-llm.js'), 'serve', '--port', '0', '--host', '127.0.0.1', ...args],
      { cwd: repoRoot, env: { ...process.env, PORT: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('the built server on GGUF files and q8_0 weights', () => {
  let tiny: TinyModel;
  let dir: string;
  let f32File: string;
  let q8File: string;
  before(async () => {
    assertBuildCurrent();
    // 32 wide: every matrix's rows split into Q8_0's 32-blocks.
    tiny = await createTinyModel({ seed: 21, nEmbd: 32 });
    dir = mkdtempSync(join(tmpdir(), 'tiny-llm-gguf-'));
    const model = await loadModelDir(tiny.dir, { requireTokenizer: true });
    const base = { config: model.config, params: model.params, tokenizerData: model.tokenizerData! };
    f32File = join(dir, 'model-f32.gguf');
    q8File = join(dir, 'model-q8_0.gguf');
    await exportGguf(f32File, base);
    await exportGguf(q8File, { ...base, quantize: 'q8_0' });
  });
  after(() => {
    tiny.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves a .gguf given as --model-dir with the text the directory gives, and says f32; --quantize q8_0 says q8_0 and answers', async () => {
    const fromDir = await startBuiltServer({ modelDir: tiny.dir });
    let dirText: string;
    try {
      dirText = await generated(fromDir);
      assert.deepEqual(await formatOf(fromDir), { api: 'f32', v1: 'f32' });
    } finally {
      await fromDir.close();
    }
    const fromGguf = await startBuiltServer({ modelDir: f32File });
    try {
      assert.deepEqual(await formatOf(fromGguf), { api: 'f32', v1: 'f32' });
      const text = await generated(fromGguf);
      assert.ok(text.length > 0);
      assert.equal(text, dirText, 'the F32 GGUF generates other text than its directory');
    } finally {
      await fromGguf.close();
    }
    const quantized = await startBuiltServer({ modelDir: f32File, args: ['--quantize', 'q8_0'] });
    let quantizedText: string;
    try {
      assert.deepEqual(await formatOf(quantized), { api: 'q8_0', v1: 'q8_0' });
      quantizedText = await generated(quantized);
      assert.ok(quantizedText.length > 0);
      assert.match(quantized.output(), /\(q8_0\)/, 'the start-up log names the format');
    } finally {
      await quantized.close();
    }
    // A Q8_0 file is served as Q8_0 as it is stored: the same blocks as quantising at load, so the same text.
    const q8 = await startBuiltServer({ modelDir: q8File });
    try {
      assert.deepEqual(await formatOf(q8), { api: 'q8_0', v1: 'q8_0' });
      assert.equal(await generated(q8), quantizedText);
    } finally {
      await q8.close();
    }
  });

  it('refuses a truncated, a foreign-architecture or a missing .gguf at start: exit 1, naming the file and the reason', async () => {
    const bytes = readFileSync(f32File);
    const truncated = join(dir, 'truncated.gguf');
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 100));
    const truncatedRun = await serveExit(['--model-file', truncated]);
    assert.equal(truncatedRun.code, 1, truncatedRun.output);
    assert.ok(truncatedRun.output.includes(truncated), truncatedRun.output);
    assert.match(truncatedRun.output, /runs past the end of the file/);
    assert.doesNotMatch(truncatedRun.output, /listening at/);

    // The architecture key's value "gpt2" becomes "gptj": same length, so the file stays well formed.
    const foreign = join(dir, 'foreign.gguf');
    const at = bytes.indexOf(Buffer.from('gpt2', 'latin1'), bytes.indexOf('general.architecture'));
    const changed = Buffer.from(bytes);
    changed.write('gptj', at, 'latin1');
    writeFileSync(foreign, changed);
    const foreignRun = await serveExit(['--model-dir', foreign]);
    assert.equal(foreignRun.code, 1, foreignRun.output);
    assert.ok(foreignRun.output.includes(foreign), foreignRun.output);
    assert.match(foreignRun.output, /architecture is "gptj", not gpt2/);

    const missing = await serveExit(['--model-file', join(dir, 'absent.gguf')]);
    assert.equal(missing.code, 1, missing.output);
    assert.match(missing.output, /absent\.gguf: does not exist/);

    const both = await serveExit(['--model-file', f32File, '--model-dir', tiny.dir]);
    assert.equal(both.code, 2, both.output);
    assert.match(both.output, /--model-dir or --model-file, not both/);
  });
});
