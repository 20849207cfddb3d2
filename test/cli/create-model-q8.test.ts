// `create-model --quantize q8_0`: the model directory stores its weights as int8 (model.q8_0.gguf instead of
// model.safetensors), generate and eval load it as Q8_0, export refuses it, and ambiguous directories are refused.
import assert from 'node:assert/strict';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';

const CORPUS = [
  'The pipeline builds the image, scans it, and pushes it only when the scan is clean.',
  'Terraform creates the Cloud Run service and destroys it after the smoke test.',
  '',
  'User: What does the scan gate do?',
  'Bot: It stops the push when the image has serious vulnerabilities.',
  '',
  'User: Where does the model come from?',
  'Bot: It is trained in TypeScript while the container image is built.',
  '',
].join('\n');

/** Small enough to train in seconds; 64 wide, so every matrix's rows split into Q8_0's 32-blocks. */
const SHAPE = ['--n-embd', '64', '--n-layer', '2', '--n-head', '2', '--n-positions', '64'];
const TRAIN = [...SHAPE, '--train', '--steps', '40', '--batch-size', '4', '--seq-len', '32', '--warmup', '4'];

const json = (text: string) => JSON.parse(text.trim().split('\n').pop()!);

let work: string;
let corpus: string;
let f32Dir: string;
let q8Dir: string;
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'tiny-llm-q8dir-'));
  corpus = join(work, 'corpus.txt');
  writeFileSync(corpus, CORPUS);
  writeFileSync(join(work, 'system_prompt.txt'), 'You are a test bot.\n');
  f32Dir = join(work, 'f32');
  q8Dir = join(work, 'q8');
  for (const [dir, extra] of [
    [f32Dir, []],
    [q8Dir, ['--quantize', 'q8_0']],
  ] as const) {
    const r = await runCli(['create-model', '--model-dir', dir, '--data-file', corpus, ...TRAIN, ...extra]);
    assert.equal(r.code, 0, r.stderr);
  }
});
after(() => rmSync(work, { recursive: true, force: true }));

describe('create-model --quantize q8_0', () => {
  it('writes model.q8_0.gguf instead of model.safetensors and keeps the rest of the directory', () => {
    const files = readdirSync(q8Dir).sort();
    assert.ok(files.includes('model.q8_0.gguf'), files.join(', '));
    assert.ok(!files.includes('model.safetensors'), files.join(', '));
    const f32Files = readdirSync(f32Dir).filter((f) => f !== 'model.safetensors');
    assert.deepEqual(
      files.filter((f) => f !== 'model.q8_0.gguf'),
      f32Files.sort(),
    );
    const gguf = readFileSync(join(q8Dir, 'model.q8_0.gguf'));
    assert.equal(gguf.subarray(0, 4).toString('latin1'), 'GGUF');
    const ratio = gguf.length / readFileSync(join(f32Dir, 'model.safetensors')).length;
    // Matrices at 34/32 bytes per weight instead of 4, plus the tokenizer the GGUF holds.
    assert.ok(ratio < 0.6, `the int8 weights file is ${ratio.toFixed(3)} of the float32 one`);
    const report = JSON.parse(readFileSync(join(q8Dir, 'training.json'), 'utf8'));
    assert.equal(report.weights_format, 'q8_0');
    assert.equal(JSON.parse(readFileSync(join(f32Dir, 'training.json'), 'utf8')).weights_format, 'f32');
    assert.match(readFileSync(join(q8Dir, 'README.md'), 'utf8'), /stored as int8 in `model\.q8_0\.gguf`/);
  });

  it('a float32 directory of the same inputs is rebuilt as int8, not reused; the int8 one is then reused', async () => {
    const dir = join(work, 'switch');
    let r = await runCli(['create-model', '--model-dir', dir, ...SHAPE]);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(['create-model', '--model-dir', dir, ...SHAPE, '--quantize', 'q8_0']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(json(r.stdout).source, 'initialised', r.stderr);
    assert.ok(existsSync(join(dir, 'model.q8_0.gguf')));
    assert.ok(!existsSync(join(dir, 'model.safetensors')));
    r = await runCli(['create-model', '--model-dir', dir, ...SHAPE, '--quantize', 'q8_0']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(json(r.stdout).source, 'reused', r.stderr);
  });

  it("eval of the int8 directory is within 0.02 nats/token of the float32 directory's", async () => {
    const losses: number[] = [];
    const counted: Array<[number, number]> = [];
    for (const dir of [f32Dir, q8Dir]) {
      const r = await runCli(['eval', '--model-dir', dir, '--data-file', corpus, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const out = json(r.stdout);
      counted.push([out.lines, out.tokens]);
      losses.push(out.loss);
    }
    // The same lines and predicted tokens: only the weights' format differs.
    assert.deepEqual(counted[1], counted[0]);
    assert.equal(counted[0][0], 6);
    const diff = Math.abs(losses[0] - losses[1]);
    console.log(
      `eval loss f32 ${losses[0].toFixed(5)}, q8_0 ${losses[1].toFixed(5)}, |diff| ${diff.toExponential(2)}`,
    );
    // Trained weights: the loss is well below uniform (ln 50257 ≈ 10.8), so the comparison means something.
    assert.ok(losses[0] < 9, `f32 loss ${losses[0]}`);
    assert.ok(diff <= 0.02, `|diff| ${diff}`);
    assert.notEqual(losses[0], losses[1], 'the int8 directory was evaluated as float32');
  });

  it('generate --model-dir on it gives the text of the float32 directory quantised at load', async () => {
    const ask = ['--prompt', 'The pipeline', '--max-new-tokens', '12', '--seed', '5', '--json'];
    const q8 = await runCli(['generate', '--model-dir', q8Dir, ...ask]);
    assert.equal(q8.code, 0, q8.stderr);
    const atLoad = await runCli(['generate', '--model-dir', f32Dir, '--quantize', 'q8_0', ...ask]);
    assert.equal(atLoad.code, 0, atLoad.stderr);
    assert.ok(json(q8.stdout).ids.length > 0);
    assert.deepEqual(json(q8.stdout).ids, json(atLoad.stdout).ids);
  });

  it('a directory with both weight files, or neither, is refused naming the directory and the files', async () => {
    const both = join(work, 'both');
    rmSync(both, { recursive: true, force: true });
    const r0 = await runCli(['create-model', '--model-dir', both, ...SHAPE, '--quantize', 'q8_0']);
    assert.equal(r0.code, 0, r0.stderr);
    copyFileSync(join(f32Dir, 'model.safetensors'), join(both, 'model.safetensors'));
    for (const args of [
      ['generate', '--model-dir', both, '--prompt', 'Hi'],
      ['eval', '--model-dir', both, '--data-file', corpus],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(both), r.stderr);
      assert.match(r.stderr, /both model\.safetensors and model\.q8_0\.gguf/);
    }
    rmSync(join(both, 'model.safetensors'));
    rmSync(join(both, 'model.q8_0.gguf'));
    const none = await runCli(['generate', '--model-dir', both, '--prompt', 'Hi']);
    assert.equal(none.code, 1, none.stderr);
    assert.ok(none.stderr.includes(join(both, 'model.safetensors')), none.stderr);
    assert.match(none.stderr, /missing \(and no model\.safetensors\.index\.json or model\.q8_0\.gguf\)/);
  });

  it('export refuses the int8 directory with the reason (exit 1, nothing written)', async () => {
    for (const [format, reason] of [
      ['onnx', /holds int8 \(Q8_0\) weights; the ONNX export is float32/],
      ['gguf', /already is a Q8_0 GGUF/],
    ] as const) {
      const out = join(work, `out.${format}`);
      const r = await runCli(['export', '--model-dir', q8Dir, '--format', format, '--out', out]);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(join(q8Dir, 'model.q8_0.gguf')), r.stderr);
      assert.match(r.stderr, reason);
      assert.ok(!existsSync(out));
    }
  });

  it('--from-pretrained DIR --quantize q8_0 stores int8 and records the format beside the source', async () => {
    const dir = join(work, 'pretrained-q8');
    const r = await runCli([
      'create-model',
      '--from-pretrained',
      f32Dir,
      '--model-dir',
      dir,
      '--quantize',
      'q8_0',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(dir, 'model.q8_0.gguf')));
    assert.ok(!existsSync(join(dir, 'model.safetensors')));
    const source = JSON.parse(readFileSync(join(dir, 'source.json'), 'utf8'));
    assert.equal(source.weights_format, 'q8_0');
    assert.equal(source.kind, 'directory');
    assert.match(readFileSync(join(dir, 'README.md'), 'utf8'), /--quantize q8_0/);
    const ask = ['--prompt', 'The pipeline', '--max-new-tokens', '8', '--seed', '2', '--json'];
    const a = await runCli(['generate', '--model-dir', dir, ...ask]);
    const b = await runCli(['generate', '--model-dir', q8Dir, ...ask]);
    assert.equal(a.code, 0, a.stderr);
    assert.deepEqual(json(a.stdout).ids, json(b.stdout).ids);
  });

  it('bad values are usage errors (exit 2), and nothing is written', async () => {
    for (const [args, reason] of [
      [['--quantize', 'q4_0'], /--quantize must be q8_0, got "q4_0"/],
      [
        ['--n-embd', '40', '--n-head', '2', '--quantize', 'q8_0'],
        /--quantize q8_0 needs --n-embd a multiple of 32/,
      ],
    ] as const) {
      const dir = join(work, 'bad');
      const r = await runCli(['create-model', '--model-dir', dir, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, reason);
      assert.ok(!existsSync(dir));
    }
  });
});
