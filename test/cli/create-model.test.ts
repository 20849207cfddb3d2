// `tiny-llm create-model` end to end on tiny configs: random init, training report, determinism, reuse by
// content key (model dir, file:// and gs:// caches against a local fake GCS server), quality gate, atomicity.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadModelDir, saveModelDir } from '../../src/io/checkpoint.js';
import { defaultTokenizerData } from '../../src/io/tokenizer-files.js';
import { buildModel } from '../../src/train/build.js';
import { DEFAULT_PRESET } from '../../src/train/presets.js';
import { runCli } from '../helpers/cli.js';
import { startFakeGcs } from '../helpers/fake-gcs.js';
import { repoRoot } from '../helpers/fixtures.js';

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

const TINY = ['--n-embd', '8', '--n-layer', '1', '--n-head', '2', '--n-positions', '32'];
const TRAIN = [...TINY, '--train', '--steps', '6', '--batch-size', '2', '--seq-len', '16', '--warmup', '2'];

let work: string;
let corpus: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'tiny-llm-create-'));
  corpus = join(work, 'corpus.txt');
  writeFileSync(corpus, CORPUS);
  writeFileSync(join(work, 'system_prompt.txt'), 'You are a test bot.\n');
});
after(() => rmSync(work, { recursive: true, force: true }));

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const json = (text: string) => JSON.parse(text.trim().split('\n').pop()!);

async function create(dir: string, args: string[], env?: NodeJS.ProcessEnv) {
  const r = await runCli(['create-model', '--model-dir', dir, '--data-file', corpus, ...args], { env });
  return r;
}

describe('create-model', () => {
  it('without --train writes a GPT-2-initialised model with tokenizer files (same seed → same bytes)', async () => {
    const a = join(work, 'init-a');
    const b = join(work, 'init-b');
    const ra = await create(a, [...TINY, '--seed', '5']);
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(json(ra.stdout).source, 'initialised');
    assert.equal((await create(b, [...TINY, '--seed', '5'])).code, 0);
    assert.equal(sha(join(a, 'model.safetensors')), sha(join(b, 'model.safetensors')));
    const m = await loadModelDir(a, { requireTokenizer: true });
    assert.equal(m.config.nEmbd, 8);
    assert.equal(m.config.vocabSize, 50257);
    for (const f of ['tokenizer.json', 'vocab.json', 'merges.txt', 'README.md', 'training.json'])
      assert.ok(existsSync(join(a, f)), `missing ${f}`);
    // LayerNorm weights 1, biases 0, token embedding ~ N(0, 0.02²).
    const ln = m.params.subarray(50257 * 8 + 32 * 8, 50257 * 8 + 32 * 8 + 16);
    assert.deepEqual(Array.from(ln), [...Array(8).fill(1), ...Array(8).fill(0)]);
    let sq = 0;
    for (let i = 0; i < 50257 * 8; i++) sq += m.params[i] ** 2;
    const std = Math.sqrt(sq / (50257 * 8));
    console.log(`wte std ${std}`);
    assert.ok(Math.abs(std - 0.02) < 0.0005);
    const seed = await create(join(work, 'init-seed'), ['--preset', 'seed']);
    assert.equal(seed.code, 0, seed.stderr);
    const s = await loadModelDir(join(work, 'init-seed'));
    assert.deepEqual([s.config.nEmbd, s.config.nLayer, s.config.nHead, s.config.nPositions], [16, 1, 1, 256]);
  });

  it('--train writes the report, its eval loss equals `tiny-llm eval`, and same seed → identical weights', async () => {
    const a = join(work, 'train-a');
    const r = await create(a, TRAIN);
    assert.equal(r.code, 0, r.stderr);
    const out = json(r.stdout);
    assert.equal(out.source, 'trained');
    assert.match(r.stderr, /step 6\/6 {2}loss/);
    const report = JSON.parse(readFileSync(join(a, 'training.json'), 'utf8'));
    assert.equal(report.losses.length, 6);
    assert.equal(report.steps, 6);
    assert.equal(report.corpus_sha256, createHash('sha256').update(CORPUS).digest('hex'));
    assert.equal(report.cache_key, out.key);
    assert.ok(report.tokens_per_s > 0 && report.wall_time_s > 0);
    assert.equal(report.hyper_parameters.restrictVocab, true);
    assert.ok(report.eval_restricted_loss < report.eval_loss);
    const svg = readFileSync(join(a, 'loss-curve.svg'), 'utf8');
    assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.match(svg, /<polyline [^>]*points="[\d., ]+"/);
    const card = readFileSync(join(a, 'README.md'), 'utf8');
    assert.match(card, /## Limitations/);
    assert.match(card, new RegExp(report.eval_loss.toFixed(4)));
    const ev = await runCli(['eval', '--model-dir', a, '--data-file', corpus, '--json']);
    assert.equal(ev.code, 0, ev.stderr);
    console.log(`create-model eval ${out.eval_loss}, eval command ${ev.stdout.trim()}`);
    assert.equal(JSON.parse(ev.stdout).loss, out.eval_loss);

    const b = join(work, 'train-b');
    assert.equal((await create(b, TRAIN)).code, 0);
    assert.equal(sha(join(a, 'model.safetensors')), sha(join(b, 'model.safetensors')));
    const c = join(work, 'train-c');
    assert.equal((await create(c, [...TRAIN, '--seed', '99'])).code, 0);
    assert.notEqual(sha(join(a, 'model.safetensors')), sha(join(c, 'model.safetensors')));
  });

  it('reuses the model dir only for the same inputs; a changed corpus or config rebuilds', async () => {
    const dir = join(work, 'reuse');
    assert.equal(json((await create(dir, TRAIN)).stdout).source, 'trained');
    const again = await create(dir, TRAIN);
    assert.equal(json(again.stdout).source, 'reused');
    assert.match(again.stderr, /reusing/);
    assert.equal(json((await create(dir, [...TRAIN, '--force-train'])).stdout).source, 'trained');
    // An lr other than the preset's (twice it), so the config really changes.
    const otherLr = String(DEFAULT_PRESET.hyper.lr * 2);
    assert.equal(json((await create(dir, [...TRAIN, '--lr', otherLr])).stdout).source, 'trained');
    const changed = join(work, 'corpus2.txt');
    writeFileSync(changed, `${CORPUS}\nOne more fact about the pipeline.\n`);
    const r = await runCli([
      'create-model',
      '--model-dir',
      dir,
      '--data-file',
      changed,
      ...TRAIN,
      '--lr',
      otherLr,
    ]);
    assert.equal(json(r.stdout).source, 'trained');
    assert.match(r.stderr, /different config or corpus/);
  });

  it('--max-loss fails with a clear message and writes nothing; the previous model stays', async () => {
    const dir = join(work, 'gate');
    assert.equal((await create(dir, TRAIN)).code, 0);
    const before = sha(join(dir, 'model.safetensors'));
    const r = await create(dir, [...TRAIN, '--force-train', '--seed', '3', '--max-loss', '0.5']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /quality gate failed: eval loss [\d.]+ nats\/token is above --max-loss 0.5/);
    assert.equal(sha(join(dir, 'model.safetensors')), before);
    const fresh = await create(join(work, 'gate-new'), [...TRAIN, '--max-loss', '0.5']);
    assert.equal(fresh.code, 1);
    assert.ok(!existsSync(join(work, 'gate-new')));
    assert.equal((await create(join(work, 'gate-ok'), [...TRAIN, '--max-loss', '20'])).code, 0);
  });

  it('file:// cache: a second build with the same inputs comes from the cache; other inputs miss', async () => {
    const cache = `file://${join(work, 'cache')}`;
    const a = join(work, 'cached-a');
    const ra = await create(a, [...TRAIN, '--cache', cache]);
    assert.equal(ra.code, 0, ra.stderr);
    assert.match(ra.stderr, /cache miss/);
    assert.match(ra.stderr, /stored in cache/);
    const b = join(work, 'cached-b');
    const rb = await create(b, [...TRAIN, '--cache', cache]);
    assert.equal(json(rb.stdout).source, 'cache');
    for (const f of readdirSync(a)) assert.equal(sha(join(b, f)), sha(join(a, f)), f);
    const rc = await create(join(work, 'cached-c'), [...TRAIN, '--cache', cache, '--n-embd', '16']);
    assert.equal(json(rc.stdout).source, 'trained');
  });

  it('gs:// cache through @google-cloud/storage against a local fake GCS JSON API', async () => {
    const gcs = await startFakeGcs();
    try {
      const env = { STORAGE_EMULATOR_HOST: gcs.url };
      const cache = 'gs://tiny-llm-test/models';
      const a = join(work, 'gs-a');
      const ra = await create(a, [...TRAIN, '--cache', cache], env);
      assert.equal(ra.code, 0, ra.stderr);
      assert.equal(json(ra.stdout).source, 'trained');
      const key = json(ra.stdout).key;
      assert.ok(gcs.objects.has(`tiny-llm-test/models/${key}/manifest.json`));
      assert.ok(gcs.objects.has(`tiny-llm-test/models/${key}/model.safetensors`));
      const b = join(work, 'gs-b');
      const rb = await create(b, [...TRAIN, '--cache', cache], env);
      assert.equal(json(rb.stdout).source, 'cache', rb.stderr);
      assert.equal(sha(join(b, 'model.safetensors')), sha(join(a, 'model.safetensors')));
      // A damaged object is a miss, never a bad model.
      const obj = gcs.objects.get(`tiny-llm-test/models/${key}/model.safetensors`)!;
      obj[100] ^= 0xff;
      const rc = await create(join(work, 'gs-c'), [...TRAIN, '--cache', cache], env);
      assert.equal(json(rc.stdout).source, 'trained');
      const changed = join(work, 'corpus3.txt');
      writeFileSync(changed, `${CORPUS}\nAnother fact.\n`);
      const rd = await runCli(
        [
          'create-model',
          '--model-dir',
          join(work, 'gs-d'),
          '--data-file',
          changed,
          ...TRAIN,
          '--cache',
          cache,
        ],
        { env },
      );
      assert.equal(json(rd.stdout).source, 'trained');
      assert.ok(gcs.requests.some((r) => r.startsWith('POST /upload/storage/v1/b/tiny-llm-test/o')));
    } finally {
      await gcs.close();
    }
  });

  it('a run killed mid-training leaves the previous model dir untouched', async () => {
    const dir = join(work, 'killed');
    assert.equal((await create(dir, TRAIN)).code, 0);
    const files = readdirSync(dir).sort();
    const before = files.map((f) => sha(join(dir, f)));
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(repoRoot, 'src/cli/main.ts'),
        'create-model',
        '--train',
        '--model-dir',
        dir,
        '--data-file',
        corpus,
      ],
      { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    await new Promise<void>((resolve) => {
      let seen = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        seen += d;
        if (/step \d+\//.test(seen)) resolve();
      });
      child.on('close', () => resolve());
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    assert.deepEqual(readdirSync(dir).sort(), files);
    assert.deepEqual(
      files.map((f) => sha(join(dir, f))),
      before,
    );
    assert.deepEqual(
      readdirSync(work).filter((f) => f.startsWith('.killed')),
      [],
    );
  });

  it('a write that fails part-way leaves the previous model dir as it was', async () => {
    const dir = join(work, 'failwrite');
    assert.equal((await create(dir, TRAIN)).code, 0);
    const before = sha(join(dir, 'model.safetensors'));
    const tokenizerData = await defaultTokenizerData();
    const logs: string[] = [];
    await assert.rejects(
      buildModel({
        preset: 'default',
        config: { ...DEFAULT_PRESET.config, nEmbd: 8, nLayer: 1, nHead: 2, nPositions: 32 },
        hyper: { ...DEFAULT_PRESET.hyper, steps: 3, batchSize: 2, seqLen: 16, warmup: 1 },
        seed: 11,
        train: true,
        forceTrain: true,
        modelDir: dir,
        data: { file: corpus, text: CORPUS },
        systemPrompt: null,
        tokenizerData,
        cacheUri: null,
        maxLoss: null,
        log: (l) => logs.push(l),
        // The real writer, whose tokenizer files fail after config and weights are in the temp dir.
        save: (d, opts) =>
          saveModelDir(d, {
            ...opts,
            tokenizerData: {
              vocab: tokenizerData.vocab,
              get merges(): Array<[string, string]> {
                throw new Error('simulated disk full');
              },
            },
          }),
      }),
      /simulated disk full/,
    );
    assert.equal(sha(join(dir, 'model.safetensors')), before);
    assert.deepEqual(
      readdirSync(work).filter((f) => f.startsWith('.failwrite')),
      [],
    );
  });

  it('bad arguments print usage and the reason, exit 2; a missing data file exits 1', async () => {
    for (const [args, reason] of [
      [['--preset', 'huge'], /--preset must be seed or default/],
      [['--n-embd', '10', '--n-head', '3'], /divisible/],
      [['--steps', '0'], /--steps must be >= 1/],
      [['--cache', 's3://x'], /--cache must be file:\/\/DIR or gs:\/\/BUCKET\/PREFIX/],
      [['--bogus'], /Unknown option/],
      [['--force-train'], /--force-train needs --train/],
    ] as const) {
      const r = await runCli(['create-model', '--model-dir', join(work, 'bad'), ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: tiny-llm create-model/);
      assert.match(r.stderr, reason);
    }
    const r = await runCli([
      'create-model',
      '--train',
      '--model-dir',
      join(work, 'bad'),
      '--data-file',
      join(work, 'nope.txt'),
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /data file .*nope.txt: does not exist/);
  });
});
