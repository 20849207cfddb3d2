// `tiny-llm create-model --from-pretrained`: a local Hugging Face directory round-trips byte for byte, the Hub
// (a loopback stand-in with its URL layout, redirects and headers) and Cloud Storage (a fake JSON API) sources
// download verified and pinned, resume after a stall or a cut, and every bad source ends with one line and
// exit 1, leaving the previous model where a server would look and no half-written one.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GPT2 } from '../../src/engine/model.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { exportGguf } from '../../src/io/gguf.js';
import { tokenizerFileContents } from '../../src/io/tokenizer-files.js';
import { type CliResult, runCli } from '../helpers/cli.js';
import { startFakeGcs } from '../helpers/fake-gcs.js';
import { type FakeHub, startFakeHub } from '../helpers/fake-hub.js';
import { fixture, maxAbsDiff, repoRoot } from '../helpers/fixtures.js';
import { roundTo, writeVariant } from '../helpers/hf-dirs.js';
import { smallTokenizerData } from '../io/small-tokenizer.js';

const golden = fixture('multi-v512');
const COMMIT = 'c0ffee'.padEnd(40, '1');
const COMMIT_V1 = 'beef'.padEnd(40, '2');
const TOKEN = 'hf_testtoken';
const CORPUS = [
  'the pipeline builds the image and scans it',
  'the scan gate stops the push when the image is not clean',
  '',
  'User: what does the scan gate do?',
  'Bot: it stops the push when the image has serious problems.',
  '',
].join('\n');

let work: string;
let hub: FakeHub;
/** multi-v512 as a Hub repository holds it: golden config and weights plus a 512-token tokenizer. */
let hfDir: string;
let counter = 0;
const fresh = (name = 'case') => join(work, `${name}-${counter++}`);
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function readDir(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'tiny-llm-pretrained-'));
  hfDir = join(work, 'hf-multi');
  writeVariant(golden, hfDir);
  const tokenizer = tokenizerFileContents(smallTokenizerData(512), { modelMaxLength: 64 });
  for (const [name, text] of Object.entries(tokenizer)) writeFileSync(join(hfDir, name), text);
  writeFileSync(join(work, 'corpus.txt'), CORPUS);

  hub = await startFakeHub();
  hub.repos.set('tiny-org/multi-v512', { commit: COMMIT, files: readDir(hfDir) });
  // Hub-style copy (no "transformer." prefix, buffers), F16 in two shards, reachable by a tag.
  const f16 = join(work, 'hf-f16');
  writeVariant(golden, f16, { dtype: 'F16', shards: 2, stripPrefix: true, buffers: true });
  hub.repos.set('multi-f16', { commit: COMMIT, files: readDir(f16), refs: { v1: COMMIT_V1 } });
  hub.repos.set('tiny-org/private', { commit: COMMIT, files: readDir(hfDir), private: true });
  hub.tokens.set(TOKEN, []);
  hub.tokens.set('hf_other', ['someone/else']);
  const llamaConfig = { ...JSON.parse(readFileSync(join(golden, 'config.json'), 'utf8')) };
  llamaConfig.architectures = ['LlamaForCausalLM'];
  llamaConfig.model_type = 'llama';
  const llamaFiles = readDir(hfDir);
  llamaFiles.set('config.json', Buffer.from(JSON.stringify(llamaConfig)));
  hub.repos.set('meta/llama-tiny', {
    commit: COMMIT,
    files: llamaFiles,
    config: { model_type: 'llama', architectures: ['LlamaForCausalLM'] },
  });
  // The model-info summary says nothing: config.json itself must be checked before the weights.
  hub.repos.set('meta/llama-quiet', { commit: COMMIT, files: llamaFiles, config: {} });
  const pickle = readDir(hfDir);
  pickle.delete('model.safetensors');
  pickle.set('pytorch_model.bin', Buffer.from('PK not a real pickle'));
  hub.repos.set('old/pickle-only', { commit: COMMIT, files: pickle });
});
after(async () => {
  await hub.close();
  rmSync(work, { recursive: true, force: true });
});

// Generous: this process serves the stand-in while other suites load the machine. Stall tests set a short one.
const hubEnv = (extra: NodeJS.ProcessEnv = {}) => ({
  HF_ENDPOINT: hub.url,
  HF_TOKEN: '',
  HF_HUB_DOWNLOAD_TIMEOUT: '120',
  ...extra,
});
const STALL_S = '8';

function create(out: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(['create-model', '--model-dir', out, ...args], { env });
}

/** Exit 1 and a last stderr line `tiny-llm create-model: ...` matching `reason`, with no stack trace. */
function failsWithOneLine(r: CliResult, reason: RegExp): string {
  assert.equal(r.code, 1, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  const last = lines[lines.length - 1];
  assert.match(last, /^tiny-llm create-model: /);
  assert.match(last, reason);
  assert.ok(!/^\s+at /m.test(r.stderr), `no stack trace: ${r.stderr}`);
  console.log(`# ${last.replace(hub.url, 'HUB')}`);
  return last;
}

/** The directory is as it was: same files, same bytes. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, sha(join(dir, f))]),
  );
}

/** Nothing half-written beside `out`: no temp or old directories, and (unless kept to resume) no staging. */
function noLeftovers(out: string, allowStaging = false): void {
  const base = out.slice(out.lastIndexOf('/') + 1);
  const parent = out.slice(0, out.lastIndexOf('/'));
  const left = readdirSync(parent).filter((f) => f.startsWith(`.${base}.`));
  const allowed = allowStaging ? left.filter((f) => f !== `.${base}.download`) : left;
  assert.deepEqual(allowed, [], `leftovers beside ${out}`);
}

async function logitsOf(dir: string): Promise<Float32Array> {
  const loaded = await loadModelDir(dir);
  const model = new GPT2(loaded.config, loaded.params);
  const ids = Int32Array.from([1, 5, 100, 200, 300, 7]);
  model.forward(ids, 1, ids.length);
  return model.logits.slice(0, ids.length * loaded.config.vocabSize);
}

describe('create-model --from-pretrained DIR', () => {
  it('an F32 checkpoint written by transformers round-trips: same weight and config bytes, same logits', async () => {
    const out = fresh('round');
    const r = await create(out, ['--from-pretrained', golden]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha(join(out, 'model.safetensors')), sha(join(golden, 'model.safetensors')));
    assert.equal(sha(join(out, 'config.json')), sha(join(golden, 'config.json')));
    const diff = maxAbsDiff(await logitsOf(out), await logitsOf(golden));
    console.log(`# round trip: weights byte-identical, largest logit difference ${diff}`);
    assert.equal(diff, 0);
    const source = JSON.parse(readFileSync(join(out, 'source.json'), 'utf8'));
    assert.equal(source.kind, 'directory');
    assert.equal(source.files_sha256['model.safetensors'], sha(join(golden, 'model.safetensors')));
    assert.match(r.stderr, /written without a tokenizer/);
  });

  it('the built CLI (bin/tiny-llm.js over dist/) does the same, with the tokenizer carried over', async () => {
    const built = existsSync(join(repoRoot, 'dist', 'cli', 'main.js'));
    if (!built) return;
    const { spawnSync } = await import('node:child_process');
    const out = fresh('built');
    const r = spawnSync(
      process.execPath,
      [join(repoRoot, 'bin', 'tiny-llm.js'), 'create-model', '--from-pretrained', hfDir, '--model-dir', out],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(sha(join(out, 'model.safetensors')), sha(join(golden, 'model.safetensors')));
    for (const f of ['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer-tables.bin'])
      assert.ok(existsSync(join(out, f)), f);
    const loaded = await loadModelDir(out, { requireTokenizer: true });
    assert.equal(Object.keys(loaded.tokenizerData!.vocab).length, 512);
  });

  it('--train fine-tunes the pretrained weights (full softmax), with report, loss curve and the quality gate', async () => {
    const out = fresh('tune');
    const args = ['--from-pretrained', hfDir, '--train', '--data-file', join(work, 'corpus.txt')];
    const small = ['--steps', '4', '--batch-size', '2', '--seq-len', '16', '--warmup', '1', '--lr', '1e-3'];
    const r = await create(out, [...args, ...small]);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(result.source, 'fine-tuned');
    const report = JSON.parse(readFileSync(join(out, 'training.json'), 'utf8'));
    assert.equal(report.steps, 4);
    assert.equal(report.training_vocab_size, null, 'full softmax');
    assert.equal(report.source.kind, 'directory');
    assert.ok(existsSync(join(out, 'loss-curve.svg')));
    const tuned = await loadModelDir(out);
    const start = await loadModelDir(golden);
    const moved = maxAbsDiff(tuned.params, start.params);
    console.log(
      `# fine-tuning moved the weights by up to ${moved.toExponential(2)}; eval loss ${result.eval_loss}`,
    );
    assert.ok(moved > 1e-4 && moved < 0.1, 'started from the pretrained weights and moved them a little');

    // The gate: nothing written when the eval loss is above --max-loss.
    const before = snapshot(out);
    const gated = await create(out, [...args, ...small, '--max-loss', '0.01']);
    failsWithOneLine(gated, /quality gate failed: eval loss [\d.]+ nats\/token is above --max-loss 0\.01/);
    assert.deepEqual(snapshot(out), before);
    noLeftovers(out);
  });

  it('bad local sources: a missing directory, a missing .gguf file, pickle weights, another architecture', async () => {
    const out = fresh('bad');
    failsWithOneLine(await create(out, ['--from-pretrained', join(work, 'nope')]), /no such directory/);
    failsWithOneLine(
      await create(out, ['--from-pretrained', join(work, 'model.gguf')]),
      /model\.gguf: no such file/,
    );
    const pickle = fresh('pickle');
    mkdirSync(pickle);
    writeFileSync(join(pickle, 'config.json'), readFileSync(join(golden, 'config.json')));
    writeFileSync(join(pickle, 'pytorch_model.bin'), 'PK');
    failsWithOneLine(
      await create(out, ['--from-pretrained', pickle]),
      /pytorch_model\.bin: is a PyTorch pickle checkpoint; only safetensors weights are read/,
    );
    assert.ok(!existsSync(out));
    noLeftovers(out);
  });

  it('flags that belong to training from scratch, or a --revision without an hf: source, are usage errors', async () => {
    for (const [args, reason] of [
      [['--from-pretrained', golden, '--preset', 'seed'], /--preset does not apply with --from-pretrained/],
      [['--from-pretrained', golden, '--n-embd', '8'], /--n-embd does not apply/],
      [['--from-pretrained', golden, '--revision', 'main'], /--revision applies to hf: sources only/],
      [['--from-pretrained', 'hf:a/b@v1', '--revision', 'v2'], /contradicts the @v1/],
      [['--revision', 'main'], /--revision needs --from-pretrained/],
      [['--from-pretrained', 'hf:bad name'], /not a Hub repository/],
      [['--from-pretrained', 's3://bucket/x'], /unsupported source/],
    ] as const) {
      const r = await create(fresh('usage'), [...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, reason);
    }
  });
});

describe('create-model --from-pretrained FILE.gguf', () => {
  it('an F16 GGUF becomes a float32 model directory: config, tokenizer and weights within F16 rounding; Q8_0 and broken files are refused', async () => {
    const original = await loadModelDir(hfDir, { requireTokenizer: true });
    const base = { config: original.config, params: original.params, tokenizerData: original.tokenizerData! };
    const f16File = join(work, 'multi-f16.gguf');
    await exportGguf(f16File, { ...base, quantize: 'f16' });
    const out = fresh('gguf');
    const r = await create(out, ['--from-pretrained', f16File]);
    assert.equal(r.code, 0, r.stderr);
    const made = await loadModelDir(out, { requireTokenizer: true });
    assert.deepEqual({ ...made.config }, { ...original.config });
    assert.deepEqual(made.storedDtypes, ['F32']);
    assert.deepEqual(made.tokenizerData?.merges, original.tokenizerData?.merges);
    assert.deepEqual(made.tokenizerData?.vocab, original.tokenizerData?.vocab);
    let worst = 0;
    for (let i = 0; i < made.params.length; i++) {
      const want = original.params[i];
      const err = Math.abs(made.params[i] - want);
      // F16 keeps 11 significant bits: half an ulp is 2^-11 of the value (the subnormal range has a floor).
      assert.ok(
        err <= Math.max(Math.abs(want) * 2 ** -11, 2 ** -25),
        `parameter ${i}: ${made.params[i]} vs ${want}`,
      );
      worst = Math.max(worst, err);
    }
    console.log(`# F16 GGUF → model directory: largest weight difference ${worst}`);
    assert.ok(worst > 0, 'the weights did not go through F16');
    const source = JSON.parse(readFileSync(join(out, 'source.json'), 'utf8'));
    assert.equal(source.kind, 'gguf');
    assert.deepEqual(source.tensor_types, ['F16', 'F32']);
    noLeftovers(out);

    const q8File = join(work, 'multi-q8.gguf');
    await exportGguf(q8File, { ...base, quantize: 'q8_0' });
    failsWithOneLine(await create(fresh('q8'), ['--from-pretrained', q8File]), /matrices are Q8_0/);
    const bytes = readFileSync(f16File);
    const truncated = join(work, 'truncated.gguf');
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 64));
    const cut = fresh('cut');
    failsWithOneLine(await create(cut, ['--from-pretrained', truncated]), /truncated\.gguf: .*past the end/);
    assert.ok(!existsSync(cut));
    noLeftovers(cut);
  });
});

describe('create-model --from-pretrained hf:... against a stand-in for the Hub', () => {
  it('downloads, verifies and pins to the commit; the model card records source, revision and commit', async () => {
    const out = fresh('hub');
    hub.requests.length = 0;
    const r = await create(out, ['--from-pretrained', 'hf:tiny-org/multi-v512'], hubEnv());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha(join(out, 'model.safetensors')), sha(join(golden, 'model.safetensors')));
    const source = JSON.parse(readFileSync(join(out, 'source.json'), 'utf8'));
    assert.deepEqual(
      { uri: source.uri, revision: source.revision, commit: source.commit },
      { uri: 'hf:tiny-org/multi-v512', revision: 'main', commit: COMMIT },
    );
    assert.equal(source.files_sha256['model.safetensors'], sha(join(golden, 'model.safetensors')));
    const card = readFileSync(join(out, 'README.md'), 'utf8');
    assert.match(card, new RegExp(`commit downloaded \\| \`${COMMIT}\``));
    // Every file was fetched at the commit, not at the moving branch; the weights came through the LFS redirect.
    const resolves = hub.requests.filter((q) => q.path.includes('/resolve/'));
    assert.ok(resolves.length >= 5);
    assert.ok(resolves.every((q) => q.path.includes(`/resolve/${COMMIT}/`)));
    assert.ok(hub.requests.some((q) => q.path.startsWith('/cdn-lfs/tiny-org/multi-v512/')));
    assert.ok(!hub.requests.some((q) => q.path.endsWith('pytorch_model.bin')));
    assert.ok(
      !existsSync(`${out.slice(0, out.lastIndexOf('/'))}/.${out.slice(out.lastIndexOf('/') + 1)}.download`),
    );
    noLeftovers(out);
  });

  it('a tag given with --revision, F16 weights in shards with Hub-style names: converted once, logits within rounding', async () => {
    const out = fresh('f16');
    hub.requests.length = 0;
    const r = await create(out, ['--from-pretrained', 'hf:multi-f16', '--revision', 'v1'], hubEnv());
    assert.equal(r.code, 0, r.stderr);
    const source = JSON.parse(readFileSync(join(out, 'source.json'), 'utf8'));
    assert.equal(source.revision, 'v1');
    assert.equal(source.commit, COMMIT_V1);
    assert.deepEqual(source.stored_dtypes, ['F16'], 'the buffers are not parameters');
    const got = await loadModelDir(out);
    const original = await loadModelDir(golden);
    assert.equal(maxAbsDiff(got.params, roundTo('F16', original.params)), 0);
    const diff = maxAbsDiff(await logitsOf(out), await logitsOf(golden));
    console.log(
      `# F16 shards from the Hub: largest logit difference from the F32 original ${diff.toExponential(3)}`,
    );
    assert.ok(diff > 0 && diff < 5e-3);
    assert.ok(
      hub.requests.some((q) => q.path.includes(`/resolve/${COMMIT_V1}/model-00002-of-00002.safetensors`)),
    );
  });

  it('a stalled download ends with one line; the next run resumes it with a range request', async () => {
    const out = fresh('stall');
    const size = hub.repos.get('tiny-org/multi-v512')!.files.get('model.safetensors')!.length;
    hub.faults.set('model.safetensors', { stallAfter: 100_000, times: 1 });
    const t0 = Date.now();
    const r = await create(
      out,
      ['--from-pretrained', 'hf:tiny-org/multi-v512'],
      hubEnv({ HF_HUB_DOWNLOAD_TIMEOUT: STALL_S }),
    );
    failsWithOneLine(
      r,
      /multi-v512@c0ffee1+\/model\.safetensors: download stalled \(no data for 8 s.*the next run resumes it/,
    );
    console.log(`# stalled run ended after ${Date.now() - t0} ms`);
    assert.ok(!existsSync(out), 'no model where a server would look');
    noLeftovers(out, true);
    hub.requests.length = 0;
    const again = await create(out, ['--from-pretrained', 'hf:tiny-org/multi-v512'], hubEnv());
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /resuming at 100\.0 kB/);
    const ranged = hub.requests.filter(
      (q) => q.path.startsWith('/cdn-lfs/') && q.range === `bytes=100000-${size - 1}`,
    );
    assert.equal(ranged.length, 1, JSON.stringify(hub.requests.map((q) => [q.path, q.range])));
    assert.equal(sha(join(out, 'model.safetensors')), sha(join(golden, 'model.safetensors')));
    noLeftovers(out);
  });

  it('a truncated download keeps the previous model; a server that ignores the range is restarted cleanly', async () => {
    const out = fresh('cut');
    assert.equal((await create(out, ['--from-pretrained', golden])).code, 0);
    const before = snapshot(out);
    hub.faults.set('model.safetensors', { truncateAt: 50_000, times: 1 });
    const r = await create(out, ['--from-pretrained', 'hf:tiny-org/multi-v512'], hubEnv());
    failsWithOneLine(r, /model\.safetensors: download ended after 50000 of 454000 bytes .*resumes it/);
    assert.deepEqual(snapshot(out), before, 'the previous model is untouched');
    noLeftovers(out, true);
    hub.faults.set('model.safetensors', { ignoreRange: true, times: 1 });
    const again = await create(out, ['--from-pretrained', 'hf:tiny-org/multi-v512'], hubEnv());
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /does not resume downloads; starting again/);
    assert.equal(sha(join(out, 'model.safetensors')), sha(join(golden, 'model.safetensors')));
    assert.ok(existsSync(join(out, 'tokenizer.json')));
    noLeftovers(out);
  });

  it('content that does not match the listed sha256 is discarded, not kept', async () => {
    const out = fresh('corrupt');
    hub.faults.set('model.safetensors', { corrupt: true, times: 1 });
    const r = await create(out, ['--from-pretrained', 'hf:tiny-org/multi-v512'], hubEnv());
    failsWithOneLine(r, /model\.safetensors: content does not match the Hub's sha256 .*discarded/);
    assert.ok(!existsSync(out));
    noLeftovers(out);
  });

  it('404s: an unknown repository, revision or file', async () => {
    const out = fresh('404');
    failsWithOneLine(
      await create(out, ['--from-pretrained', 'hf:nobody/nothing'], hubEnv()),
      /hf:nobody\/nothing: the Hub answered 401 .*does not exist, or it is private or gated and needs HF_TOKEN/,
    );
    failsWithOneLine(
      await create(out, ['--from-pretrained', 'hf:tiny-org/multi-v512@no-such-tag'], hubEnv()),
      /not found on .* \(404: Invalid rev id: no-such-tag\)/,
    );
    hub.faults.set('model.safetensors', { status: 404, times: 1 });
    failsWithOneLine(
      await create(out, ['--from-pretrained', 'hf:tiny-org/multi-v512'], hubEnv()),
      /model\.safetensors: not found on .*404/,
    );
    assert.ok(!existsSync(out));
    noLeftovers(out);
  });

  it('tokens: none for a private repo, one the Hub refuses (401), one without access (403), a malformed one, a good one', async () => {
    const out = fresh('token');
    const src = ['--from-pretrained', 'hf:tiny-org/private'];
    failsWithOneLine(await create(out, src, hubEnv()), /401 .*needs HF_TOKEN/);
    failsWithOneLine(
      await create(out, src, hubEnv({ HF_TOKEN: 'hf_wrong' })),
      /the Hub refused the token in HF_TOKEN \(401: Invalid credentials/,
    );
    failsWithOneLine(
      await create(out, src, hubEnv({ HF_TOKEN: 'hf_other' })),
      /access denied \(403: .*\): the token in HF_TOKEN has no access/,
    );
    failsWithOneLine(
      await create(out, src, hubEnv({ HF_TOKEN: 'not-a-token' })),
      /HF_TOKEN is not a Hugging Face access token/,
    );
    assert.ok(!existsSync(out));
    noLeftovers(out);
    hub.requests.length = 0;
    const ok = await create(out, src, hubEnv({ HF_TOKEN: TOKEN }));
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(hub.requests.every((q) => q.auth === `Bearer ${TOKEN}`));
    assert.ok(!ok.stderr.includes(TOKEN) && !ok.stdout.includes(TOKEN), 'the token is never printed');
    assert.ok(!readFileSync(join(out, 'README.md'), 'utf8').includes(TOKEN));
  });

  it('another architecture is named and refused before any weights are fetched; pickle-only repos too', async () => {
    const out = fresh('arch');
    hub.requests.length = 0;
    failsWithOneLine(
      await create(out, ['--from-pretrained', 'hf:meta/llama-tiny'], hubEnv()),
      /architecture LlamaForCausalLM \(model_type "llama"\) is not GPT-2/,
    );
    failsWithOneLine(
      await create(out, ['--from-pretrained', 'hf:meta/llama-quiet'], hubEnv()),
      /hf:meta\/llama-quiet@c0ffee1+\/config\.json: architecture LlamaForCausalLM \(model_type "llama"\) is not GPT-2/,
    );
    assert.ok(!hub.requests.some((q) => q.path.includes('safetensors')), 'no weights requested');
    failsWithOneLine(
      await create(out, ['--from-pretrained', 'hf:old/pickle-only'], hubEnv()),
      /holds pytorch_model\.bin but no model\.safetensors; only safetensors weights are read/,
    );
    assert.ok(!existsSync(out));
    noLeftovers(out);
  });

  it('an unreachable endpoint', async () => {
    const out = fresh('down');
    // A port that was just free: nothing listens there.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    failsWithOneLine(
      await create(
        out,
        ['--from-pretrained', 'hf:tiny-org/multi-v512'],
        hubEnv({ HF_ENDPOINT: `http://127.0.0.1:${port}` }),
      ),
      /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
    );
    noLeftovers(out);
  });
});

describe('create-model --from-pretrained gs://... against a fake Cloud Storage', () => {
  it('fetches the prefix with CRC32C/MD5 checks; a corrupted or stalled object fails cleanly', async () => {
    const gcs = await startFakeGcs();
    try {
      for (const [name, data] of readDir(hfDir)) gcs.objects.set(`test-models/gpt2/multi/${name}`, data);
      // Not part of the model: a sub-folder and a dot file.
      gcs.objects.set('test-models/gpt2/multi/old/model.safetensors', Buffer.from('x'));
      gcs.objects.set('test-models/gpt2/multi/.gitattributes', Buffer.from('x'));
      const env = { STORAGE_EMULATOR_HOST: gcs.url, HF_HUB_DOWNLOAD_TIMEOUT: '120' };
      const out = fresh('gcs');
      const r = await create(out, ['--from-pretrained', 'gs://test-models/gpt2/multi/'], env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha(join(out, 'model.safetensors')), sha(join(golden, 'model.safetensors')));
      const source = JSON.parse(readFileSync(join(out, 'source.json'), 'utf8'));
      assert.equal(source.uri, 'gs://test-models/gpt2/multi/');
      assert.ok(/^\d+$/.test(source.generations['model.safetensors']));
      assert.match(
        r.stderr,
        /fetched gs:\/\/test-models\/gpt2\/multi\/model\.safetensors .*CRC32C and MD5 verified/,
      );
      noLeftovers(out);

      const before = snapshot(out);
      gcs.faults.set('test-models/gpt2/multi/model.safetensors', { corrupt: true });
      failsWithOneLine(
        await create(out, ['--from-pretrained', 'gs://test-models/gpt2/multi'], env),
        /model\.safetensors: CRC32C \S+ does not match the listed \S+/,
      );
      gcs.faults.set('test-models/gpt2/multi/model.safetensors', { stallAfter: 1000 });
      failsWithOneLine(
        await create(out, ['--from-pretrained', 'gs://test-models/gpt2/multi'], {
          ...env,
          HF_HUB_DOWNLOAD_TIMEOUT: STALL_S,
        }),
        /model\.safetensors: download stalled \(no data for 8 s\)/,
      );
      failsWithOneLine(
        await create(out, ['--from-pretrained', 'gs://test-models/nothing-here'], env),
        /gs:\/\/test-models\/nothing-here: no objects under this prefix/,
      );
      assert.deepEqual(snapshot(out), before);
      noLeftovers(out);
    } finally {
      await gcs.close();
    }
  });
});
