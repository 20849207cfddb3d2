// The built server (`bin/tiny-llm.js serve` and `start`) on a model directory stored as int8 (create-model
// --quantize q8_0): it serves it as Q8_0 and keeps the directory's source, `start` finds the model, and a directory
// holding both weight files is refused at start naming both.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertBuildCurrent, startBuiltServer } from '../helpers/built-server.js';
import { runCli } from '../helpers/cli.js';
import { repoRoot } from '../helpers/fixtures.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';
import { request } from './harness.js';

/**
 * Runs the built CLI's `command` on `args` until it listens or exits; `stopOn` (seen in its output) ends it
 * early. Resolves with what it printed and whether it listened; the process is always ended.
 */
function runBuilt(
  command: 'serve' | 'start',
  args: string[],
  stopOn?: RegExp,
): Promise<{ code: number | null; output: string; listened: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      process.execPath,
      [join(repoRoot, 'bin', 'tiny-llm.js'), command, '--port', '0', '--host', '127.0.0.1', ...args],
      { cwd: repoRoot, env: { ...process.env, PORT: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    let listened = false;
    const onData = (d: Buffer) => {
      output += d;
      if (!listened && /listening at http/.test(output)) {
        listened = true;
        child.kill('SIGTERM');
      } else if (stopOn?.test(output)) child.kill('SIGKILL');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, output, listened });
    });
  });
}

describe('the built server on a model directory stored as int8', () => {
  let tiny: TinyModel;
  let work: string;
  let q8Dir: string;
  before(async () => {
    assertBuildCurrent();
    // 32 wide: every matrix's rows split into Q8_0's 32-blocks.
    tiny = await createTinyModel({ seed: 31, nEmbd: 32 });
    work = mkdtempSync(join(tmpdir(), 'tiny-llm-q8served-'));
    q8Dir = join(work, 'q8');
    const r = await runCli([
      'create-model',
      '--from-pretrained',
      tiny.dir,
      '--model-dir',
      q8Dir,
      '--quantize',
      'q8_0',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(join(q8Dir, 'model.safetensors')));
  });
  after(() => {
    tiny.remove();
    rmSync(work, { recursive: true, force: true });
  });

  it('serves it as q8_0 (/api/model and /v1/models), keeps its source, answers, and generates as the f32 directory quantised at load', async () => {
    const ask = { prompt: 'The quick brown fox', max_tokens: 16, seed: 9, temperature: 0.8 };
    const server = await startBuiltServer({ modelDir: q8Dir });
    let text: string;
    try {
      const api = (await request(server.url, '/api/model')).json();
      const v1 = (await request(server.url, '/v1/models')).json();
      assert.equal(api.format, 'q8_0');
      assert.equal(v1.data[0].format, 'q8_0');
      for (const source of [api.source, v1.data[0].source]) {
        assert.equal(source.kind, 'directory');
        assert.equal(source.uri, resolve(tiny.dir));
      }
      const res = await request(server.url, { method: 'POST', url: '/v1/completions', payload: ask });
      assert.equal(res.statusCode, 200, res.body);
      text = res.json().choices[0].text;
      assert.ok(text.length > 0);
      assert.match(server.output(), /\(q8_0\)/, 'the start-up log names the format');
    } finally {
      await server.close();
    }
    const atLoad = await startBuiltServer({ modelDir: tiny.dir, args: ['--quantize', 'q8_0'] });
    try {
      const res = await request(atLoad.url, { method: 'POST', url: '/v1/completions', payload: ask });
      assert.equal(res.json().choices[0].text, text);
    } finally {
      await atLoad.close();
    }
  });

  it('start finds the int8 model in the directory and serves it (no training)', async () => {
    const run = await runBuilt('start', ['--model-dir', q8Dir], /no model in/);
    assert.ok(run.listened, run.output);
    assert.doesNotMatch(run.output, /no model in/);
  });

  it('refuses a directory holding both model.safetensors and model.q8_0.gguf at start: exit 1, naming both', async () => {
    const both = join(work, 'both');
    const r = await runCli([
      'create-model',
      '--from-pretrained',
      tiny.dir,
      '--model-dir',
      both,
      '--quantize',
      'q8_0',
    ]);
    assert.equal(r.code, 0, r.stderr);
    copyFileSync(join(tiny.dir, 'model.safetensors'), join(both, 'model.safetensors'));
    for (const command of ['serve', 'start'] as const) {
      const run = await runBuilt(command, ['--model-dir', both]);
      assert.equal(run.code, 1, `${command}: ${run.output}`);
      assert.ok(!run.listened, run.output);
      assert.ok(run.output.includes(both), run.output);
      assert.match(run.output, /both model\.safetensors and model\.q8_0\.gguf/);
    }
  });
});
