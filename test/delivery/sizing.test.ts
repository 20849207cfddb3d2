// The service's size from its model: .github/scripts/size-service.mjs computes CPU and memory from a model
// directory's header and shape, terraform/sizing.tf checks the same rule in a precondition that refuses a memory
// too small for the model at plan time (evaluated here with `terraform console`, no provider needed), and the
// service reads its API key from Secret Manager by reference, never as a value.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { stripVTControlCharacters } from 'node:util';
import { runCli } from '../helpers/cli.js';
import { loadModule, obj, repoRoot, resources, tf } from './hcl-model.js';

// Loaded before any hook or test is registered: node:test runs the file's hooks once what is registered is done.
const { doc, text } = await loadModule(join(repoRoot, 'terraform'));
const service = obj(Object.values(resources(doc, 'google_cloud_run_v2_service'))[0]);
const script = join(repoRoot, '.github/scripts/size-service.mjs');
const hasTerraform = spawnSync('terraform', ['version'], { encoding: 'utf8' }).status === 0;
const work = mkdtempSync(join(tmpdir(), 'tiny-llm-sizing-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** GPT-2 tensor shapes for a config: what create-model writes (the tied head is not stored). */
function gpt2Shapes(c: { nLayer: number; nEmbd: number; nPositions: number; vocab: number }) {
  const shapes: Record<string, number[]> = {
    'wte.weight': [c.vocab, c.nEmbd],
    'wpe.weight': [c.nPositions, c.nEmbd],
    'ln_f.weight': [c.nEmbd],
    'ln_f.bias': [c.nEmbd],
  };
  for (let l = 0; l < c.nLayer; l++) {
    const e = c.nEmbd;
    Object.assign(shapes, {
      [`h.${l}.ln_1.weight`]: [e],
      [`h.${l}.ln_1.bias`]: [e],
      [`h.${l}.attn.c_attn.weight`]: [e, 3 * e],
      [`h.${l}.attn.c_attn.bias`]: [3 * e],
      [`h.${l}.attn.c_proj.weight`]: [e, e],
      [`h.${l}.attn.c_proj.bias`]: [e],
      [`h.${l}.ln_2.weight`]: [e],
      [`h.${l}.ln_2.bias`]: [e],
      [`h.${l}.mlp.c_fc.weight`]: [e, 4 * e],
      [`h.${l}.mlp.c_fc.bias`]: [4 * e],
      [`h.${l}.mlp.c_proj.weight`]: [4 * e, e],
      [`h.${l}.mlp.c_proj.bias`]: [e],
    });
  }
  return shapes;
}

/**
 * A model directory with config.json and only the header of model.safetensors: the script reads no weights, so
 * GPT-2 small's size is tested without writing 500 MB.
 */
function modelDir(name: string, c: { nLayer: number; nEmbd: number; nPositions: number; vocab: number }) {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      n_layer: c.nLayer,
      n_embd: c.nEmbd,
      n_positions: c.nPositions,
      vocab_size: c.vocab,
      n_head: 12,
    }),
  );
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const [tensor, shape] of Object.entries(gpt2Shapes(c))) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[tensor] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([size, json]));
  return dir;
}

const GPT2_SMALL = { nLayer: 12, nEmbd: 768, nPositions: 1024, vocab: 50257 };
// The `default` preset's shape (3 332 928 parameters).
const TINY_DEFAULT = { nLayer: 2, nEmbd: 64, nPositions: 256, vocab: 50257 };
const small = modelDir('gpt2-small', GPT2_SMALL);
const tiny = modelDir('tiny', TINY_DEFAULT);

interface Sizing {
  parameters: number;
  weights_format: string;
  weights_bytes: number;
  worker_bytes: number;
  cpu: string;
  workers: number;
  memory: string;
  memory_mib: number;
  needed_mib: number;
}

function size(dir: string, ...args: string[]): { code: number | null; out: Sizing | null; err: string } {
  const r = spawnSync(process.execPath, [script, dir, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.status === 0 ? (JSON.parse(r.stdout) as Sizing) : null, err: r.stderr };
}

describe('size-service.mjs: CPU and memory from the model', () => {
  test("counts GPT-2 small's 124 439 808 parameters from the header alone and picks the smallest fit", () => {
    const r = size(small);
    assert.equal(r.code, 0, r.err);
    const s = r.out as Sizing;
    assert.equal(s.parameters, 124_439_808);
    assert.equal(s.weights_bytes, 124_439_808 * 8, 'float32: the load and the placed copy');
    console.log(`# GPT-2 small f32: ${JSON.stringify(s)}`);
    assert.deepEqual([s.cpu, s.workers], ['1', 1]);
    assert.ok(s.memory_mib >= s.needed_mib && s.memory_mib - s.needed_mib < 256, 'rounded up to 256 MiB');
    assert.equal(s.memory, `${s.memory_mib}Mi`);
  });

  test('q8_0 weights need less, the tiny default fits the smallest instance', () => {
    const f32 = size(small).out as Sizing;
    const q8 = size(small, '--quantize', 'q8_0').out as Sizing;
    assert.equal(q8.weights_format, 'q8_0');
    assert.ok(q8.needed_mib < f32.needed_mib, `${q8.needed_mib} < ${f32.needed_mib}`);
    const t = size(tiny).out as Sizing;
    assert.deepEqual([t.cpu, t.memory], ['1', '512Mi']);
  });

  test('a directory stored as int8 (model.q8_0.gguf) is sized as q8_0 from its shape, without --quantize', async () => {
    // Directories create-model writes, float32 and int8, of the same shape: the same parameter count.
    const shape = ['--n-embd', '64', '--n-layer', '2', '--n-head', '2', '--n-positions', '64'];
    const f32Dir = join(work, 'written-f32');
    const q8Dir = join(work, 'written-q8');
    for (const [dir, extra] of [
      [f32Dir, []],
      [q8Dir, ['--quantize', 'q8_0']],
    ] as const) {
      const r = await runCli(['create-model', '--model-dir', dir, ...shape, ...extra]);
      assert.equal(r.code, 0, r.stderr);
    }
    const f32 = size(f32Dir).out as Sizing;
    const q8 = size(q8Dir);
    assert.equal(q8.code, 0, q8.err);
    const stored = q8.out as Sizing;
    assert.equal(stored.parameters, f32.parameters);
    assert.equal(stored.weights_format, 'q8_0');
    assert.equal(stored.weights_bytes, Math.ceil(f32.parameters * 3 * (34 / 32)));
    assert.deepEqual(
      size(q8Dir, '--quantize', 'q8_0').out,
      stored,
      '--quantize changes nothing for int8 weights',
    );

    // GPT-2 small's shape stored as int8: less than float32, and less than float32 quantised at load.
    const smallQ8 = join(work, 'gpt2-small-q8');
    mkdirSync(smallQ8);
    copyFileSync(join(small, 'config.json'), join(smallQ8, 'config.json'));
    writeFileSync(join(smallQ8, 'model.q8_0.gguf'), 'GGUF');
    const s = size(smallQ8).out as Sizing;
    console.log(`# GPT-2 small stored as q8_0: ${JSON.stringify(s)}`);
    assert.equal(s.parameters, 124_439_808);
    assert.ok(s.needed_mib < (size(small, '--quantize', 'q8_0').out as Sizing).needed_mib);

    // Both weight files: the server refuses the directory, so the sizing does too.
    copyFileSync(join(f32Dir, 'model.safetensors'), join(q8Dir, 'model.safetensors'));
    const both = size(q8Dir);
    assert.equal(both.code, 1);
    assert.match(both.err, /holds both model\.safetensors and model\.q8_0\.gguf/);
  });

  test('a chosen CPU count gets one worker each and memory for all of them', () => {
    const one = size(small).out as Sizing;
    const four = size(small, '--cpu', '4').out as Sizing;
    assert.deepEqual([four.cpu, four.workers], ['4', 4]);
    assert.ok(four.needed_mib > one.needed_mib);
    assert.ok(four.memory_mib >= 2048, '4 vCPU take at least 2 GiB on Cloud Run');
  });

  test('refuses a memory too small for the model, a combination Cloud Run refuses, and bad input', () => {
    const refused: [string[], RegExp][] = [
      [['--memory', '1Gi'], /memory 1Gi is too small for this model with 1 CPU: it needs \d+ MiB/],
      [['--cpu', '4', '--memory', '1Gi'], /too small|takes 2048-16384 MiB/],
      [['--cpu', '1', '--memory', '6Gi'], /1 CPU takes 512-4096 MiB on Cloud Run; memory 6Gi is outside it/],
      [['--cpu', '3'], /cpu 3 is not one Cloud Run offers/],
      [['--memory', '2GB'], /memory "2GB" is not a quantity such as 512Mi or 2Gi/],
      [['--quantize', 'q4_0'], /quantize "q4_0": expected q8_0 or nothing/],
    ];
    for (const [args, message] of refused) {
      const r = size(small, ...args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, message);
      assert.equal(r.err.trim().split('\n').length, 1, 'one line');
    }
    const missing = size(join(work, 'nowhere'));
    assert.equal(missing.code, 1);
    assert.match(missing.err, /config\.json/);
  });
});

describe('terraform: the memory rule refuses a service too small for its model before anything is deployed', () => {
  const preconditions = obj(service.lifecycle).precondition as { condition: string }[];
  const expr = (hcl: string) => hcl.replace(/^\$\{([\s\S]*)\}$/, '$1');

  /** Evaluates expressions with the module's variables.tf and sizing.tf and these inputs, without a provider. */
  function evaluate(vars: Record<string, string | number>, expressions: string[]) {
    const dir = mkdtempSync(join(work, 'tf-'));
    for (const f of ['variables.tf', 'sizing.tf']) copyFileSync(join(repoRoot, 'terraform', f), join(dir, f));
    const required = {
      project_id: 'example-project',
      environment_id: 'e1',
      image: `europe-west1-docker.pkg.dev/p/r/i@sha256:${'a'.repeat(64)}`,
      runtime_service_account: 'tiny-llm-runtime@example-project.iam.gserviceaccount.com',
      created_at: 1_700_000_000,
    };
    const args = Object.entries({ ...required, ...vars }).flatMap(([k, v]) => ['-var', `${k}=${v}`]);
    const r = spawnSync('terraform', ['console', ...args], {
      cwd: dir,
      encoding: 'utf8',
      input: `jsonencode([${expressions.join(', ')}])\n`,
      env: { ...process.env, TF_CLI_CONFIG_FILE: '/dev/null', CHECKPOINT_DISABLE: '1' },
    });
    rmSync(dir, { recursive: true, force: true });
    // The console prints a refused input as a diagnostic on stdout, and may still exit 0.
    const out = stripVTControlCharacters(`${r.stdout}${r.stderr}`);
    if (r.status !== 0 || /Error:/.test(out)) return { ok: false as const, err: out };
    return { ok: true as const, values: JSON.parse(JSON.parse(r.stdout.trim())) as unknown[] };
  }

  test('the precondition reads the rule, and Terraform computes what size-service.mjs computes', {
    skip: !hasTerraform && 'no terraform binary',
  }, () => {
    assert.deepEqual(
      preconditions.map((p) => p.condition),
      [
        tf('local.memory_fits_cpu'),
        tf('local.memory_fits_model'),
        tf('var.api_key_secret == "" || var.api_key_secret_version != ""'),
      ],
    );
    for (const [dir, cpu] of [
      [small, '1'],
      [small, '2'],
      [small, '4'],
      [tiny, '1'],
    ] as const) {
      for (const quantize of [[], ['--quantize', 'q8_0']]) {
        const s = size(dir, '--cpu', cpu, ...quantize).out as Sizing;
        const base = { cpu, model_weights_bytes: s.weights_bytes, model_worker_bytes: s.worker_bytes };
        const at = evaluate({ ...base, memory: s.memory }, [
          'local.model_memory_mib',
          ...preconditions.map((p) => expr(p.condition)),
        ]);
        assert.ok(at.ok, at.ok ? '' : at.err);
        assert.deepEqual(at.values, [s.needed_mib, true, true, true], `${dir} ${cpu} CPU ${quantize}`);
      }
    }
  });

  test('a memory below the rule, or no model facts at all, fails the precondition; destroy needs none', {
    skip: !hasTerraform && 'no terraform binary',
  }, () => {
    const s = size(small).out as Sizing;
    const fits = expr(preconditions[1]?.condition ?? '');
    const below = evaluate(
      { cpu: '1', memory: '1Gi', model_weights_bytes: s.weights_bytes, model_worker_bytes: s.worker_bytes },
      [fits, 'local.model_memory_mib'],
    );
    assert.ok(below.ok, below.ok ? '' : below.err);
    assert.deepEqual(below.values, [false, s.needed_mib]);
    const unknown = evaluate({ cpu: '1', memory: '2Gi' }, [fits]);
    assert.ok(unknown.ok, unknown.ok ? '' : unknown.err);
    assert.deepEqual(unknown.values, [false], 'apply without model facts is refused');
    const wrongCpu = evaluate({ cpu: '4', memory: '1Gi', model_weights_bytes: 1, model_worker_bytes: 1 }, [
      expr(preconditions[0]?.condition ?? ''),
    ]);
    assert.ok(wrongCpu.ok, wrongCpu.ok ? '' : wrongCpu.err);
    assert.deepEqual(wrongCpu.values, [false], '4 vCPU with 1 GiB is not a Cloud Run combination');
  });

  test('variable validation refuses memory outside Cloud Run range and CPU counts it does not offer', {
    skip: !hasTerraform && 'no terraform binary',
  }, () => {
    for (const [vars, message] of [
      [{ memory: '256Mi' }, /between 512Mi and 32Gi/],
      [{ memory: '64Gi' }, /between 512Mi and 32Gi/],
      [{ memory: '2GB' }, /such as 512Mi or 2Gi/],
      [{ cpu: '3' }, /cpu must be a vCPU count Cloud Run offers/],
      [{ api_key_secret_version: 'latest' }, /version number/],
    ] as const) {
      const r = evaluate(vars, ['var.memory']);
      assert.equal(r.ok, false, JSON.stringify(vars));
      assert.match(r.ok ? '' : r.err.replace(/\s*│\s*/g, ' '), message);
    }
    const good = evaluate({ memory: '2Gi', cpu: '2' }, ['local.memory_mib']);
    assert.ok(good.ok && good.values[0] === 2048);
  });
});

describe('terraform: the API key from Secret Manager, by reference', () => {
  const container = obj(obj(service.template).containers);

  test('API_KEY comes from value_source.secret_key_ref at a pinned version, only when a secret is named', () => {
    const dynamic = obj(obj(container.dynamic).env);
    assert.equal(dynamic.for_each, tf('var.api_key_secret == "" ? [] : [var.api_key_secret]'));
    const content = obj(dynamic.content);
    assert.equal(content.name, 'API_KEY');
    assert.equal(content.value, undefined, 'no plain value');
    const ref = obj(obj(content.value_source).secret_key_ref);
    assert.deepEqual(ref, { secret: tf('env.value'), version: tf('var.api_key_secret_version') });
  });

  test('no variable or resource carries a key value: Terraform only names the secret and its version', () => {
    const names = Object.keys(obj(doc.variable));
    assert.deepEqual(
      names.filter((n) => /key/.test(n)),
      ['api_key_secret', 'api_key_secret_version'],
    );
    assert.doesNotMatch(text, /google_secret_manager_secret_version\b|secret_data/);
    // One generation worker per vCPU, as the rule counts them.
    assert.deepEqual(container.env, [{ name: 'WORKERS', value: tf('var.cpu') }]);
  });
});
