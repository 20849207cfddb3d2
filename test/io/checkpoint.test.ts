// HF model directories: what we save equals what transformers saves, loads round-trip, and every broken directory is rejected by file and problem.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GPTConfig } from '../../src/engine/config.js';
import { parameterLayout } from '../../src/engine/layout.js';
import { wasmArena } from '../../src/engine/wasm/runtime.js';
import { loadModelDir, saveModelDir } from '../../src/io/checkpoint.js';
import { pyFloat, pythonJson } from '../../src/io/python-json.js';
import { parseSafetensors, serializeSafetensors, type TensorToWrite } from '../../src/io/safetensors.js';
import { writeTokenizerFiles } from '../../src/io/tokenizer-files.js';
import { fixture, maxAbsDiff } from '../helpers/fixtures.js';
import { readEveryTensor } from '../helpers/hf-dirs.js';
import { smallTokenizerData } from './small-tokenizer.js';

const golden = fixture('multi-v512');
let tmp: string;
let config: Readonly<GPTConfig>;
let params: Float32Array;
let counter = 0;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-ckpt-'));
  ({ config, params } = await loadModelDir(golden, { requireTokenizer: false }));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A fresh copy of the model files of multi-v512 (no reference files) to break. */
function copyModel(): string {
  const dir = join(tmp, `case-${counter++}`);
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors'])
    cpSync(join(golden, f), join(dir, f));
  return dir;
}

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const file = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8'));
  edit(c);
  writeFileSync(file, JSON.stringify(c));
}

/** Rewrites model.safetensors after editing its tensor map (float32/int64 tensors only). */
function editWeights(dir: string, edit: (t: Map<string, TensorToWrite>) => void): void {
  const file = join(dir, 'model.safetensors');
  const tensors = parseSafetensors(new Uint8Array(readFileSync(file)), file) as Map<string, TensorToWrite>;
  edit(tensors);
  writeFileSync(file, serializeSafetensors(tensors, { format: 'pt' }));
}

async function expectLoadError(
  dir: string,
  file: string,
  pattern: RegExp,
  requireTokenizer = false,
): Promise<void> {
  const check = (err: Error) => {
    assert.ok(err.message.includes(join(dir, file)), `error names ${file}: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  };
  await assert.rejects(loadModelDir(dir, { requireTokenizer }), check);
  // The loader that reads tensors a piece at a time (quantising at load) refuses it for the same reason.
  await assert.rejects(readEveryTensor(dir, requireTokenizer), check, 'openModelDir');
}

describe('save_pretrained compatibility', () => {
  it('saving multi-v512 reproduces the Python-written config.json, generation_config.json and model.safetensors byte for byte', async () => {
    const out = join(tmp, 'resaved');
    await saveModelDir(out, { config, params, tokenizerData: null });
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) {
      assert.ok(
        readFileSync(join(out, f)).equals(readFileSync(join(golden, f))),
        `${f} identical to transformers' file`,
      );
    }
  });

  it('save → load gives identical parameters, and a second save gives identical bytes', async () => {
    const a = join(tmp, 'save-a');
    const b = join(tmp, 'save-b');
    const tokenizerData = smallTokenizerData();
    const extraFiles = {
      'training.json': '{"steps": 3}\n',
      'loss-curve.svg': new Uint8Array([60, 115, 118, 103, 62]),
    };
    await saveModelDir(a, { config, params, tokenizerData, extraFiles });
    const loaded = await loadModelDir(a, { requireTokenizer: true });
    const diff = maxAbsDiff(loaded.params, params);
    console.log(`save → load: largest parameter difference ${diff}`);
    assert.equal(diff, 0);
    assert.deepEqual(loaded.config, config);
    assert.deepEqual(loaded.tokenizerData?.merges, tokenizerData.merges);
    assert.equal(loaded.generationConfig?.eos_token_id, 0);
    await saveModelDir(b, {
      config: loaded.config,
      params: loaded.params,
      tokenizerData: loaded.tokenizerData,
      extraFiles,
    });
    const files = readdirSync(a).sort();
    assert.deepEqual(readdirSync(b).sort(), files);
    for (const expected of [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'vocab.json',
      'merges.txt',
      'training.json',
    ]) {
      assert.ok(files.includes(expected), `${expected} written`);
    }
    for (const f of files)
      assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${f} byte-identical`);
  });

  it('explicit lm_head (tie_word_embeddings false) is stored, loaded and used instead of wte', async () => {
    const untied: GPTConfig = { ...config, tieWordEmbeddings: false };
    const layout = parameterLayout(untied);
    const tiedLayout = parameterLayout(config);
    const p = new Float32Array(layout.total);
    p.set(params.subarray(0, tiedLayout.total));
    const head = layout.byName.get('lm_head.weight')!;
    for (let i = 0; i < head.size; i++) p[head.offset + i] = Math.fround(0.001 * ((i % 97) - 48));
    const dir = join(tmp, 'untied');
    await saveModelDir(dir, { config: untied, params: p, tokenizerData: null });
    const stored = parseSafetensors(
      new Uint8Array(readFileSync(join(dir, 'model.safetensors'))),
      'model.safetensors',
    );
    assert.deepEqual(stored.get('lm_head.weight')?.shape, [config.vocabSize, config.nEmbd]);
    assert.equal(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).tie_word_embeddings, false);
    const loaded = await loadModelDir(dir);
    assert.equal(loaded.config.tieWordEmbeddings, false);
    assert.equal(maxAbsDiff(loaded.params, p), 0);
  });

  it('tied checkpoints that also store lm_head (equal to wte) load; names without "transformer." and attn.bias buffers are accepted', async () => {
    const dir = copyModel();
    editWeights(dir, (t) => {
      t.set('lm_head.weight', t.get('transformer.wte.weight')!);
      t.set('transformer.h.0.attn.bias', { shape: [1, 1, 4, 4], data: new Float32Array(16).fill(1) });
      const ln = t.get('transformer.ln_f.weight')!;
      t.delete('transformer.ln_f.weight');
      t.set('ln_f.weight', ln);
    });
    const loaded = await loadModelDir(dir);
    assert.equal(maxAbsDiff(loaded.params, params), 0);
  });

  it('writes Python-style JSON (sorted keys, floats with a decimal point, 1e-05)', () => {
    assert.equal(pyFloat(1e-5), '1e-05');
    assert.equal(pyFloat(0), '0.0');
    assert.equal(pyFloat(0.02), '0.02');
    assert.equal(pyFloat(1e16), '1e+16');
    assert.equal(pyFloat(0.0001), '0.0001');
    assert.equal(
      pythonJson({ b: [1, 'é'], a: {} }),
      '{\n  "a": {},\n  "b": [\n    1,\n    "\\u00e9"\n  ]\n}\n',
    );
  });
});

describe('atomic save', () => {
  it('a save that fails part-way (bad tokenizer data) leaves the previous directory intact and no temp dirs', async () => {
    const parent = join(tmp, 'atomic-parent');
    const dir = join(parent, 'model');
    await saveModelDir(dir, { config, params, tokenizerData: null });
    const before = readFileSync(join(dir, 'model.safetensors'));
    const changed = params.map((v) => v * 2);
    const broken = { vocab: { a: 0 }, merges: [] }; // no <|endoftext|>: the tokenizer writer throws inside the fill
    await assert.rejects(saveModelDir(dir, { config, params: changed, tokenizerData: broken }));
    assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(before), 'previous weights untouched');
    assert.deepEqual(readdirSync(parent), ['model']);
  });

  it('rejects extra files that would escape the directory or overwrite model files', async () => {
    const dir = join(tmp, 'extra');
    await assert.rejects(
      saveModelDir(dir, { config, params, tokenizerData: null, extraFiles: { '../x': 'a' } }),
      /plain file name/,
    );
    await assert.rejects(
      saveModelDir(dir, { config, params, tokenizerData: null, extraFiles: { 'config.json': '{}' } }),
      /overwrite a model file/,
    );
  });
});

describe('loadModelDir rejects broken directories, naming the file and the problem', () => {
  it('missing config.json', async () => {
    const dir = copyModel();
    rmSync(join(dir, 'config.json'));
    await expectLoadError(dir, 'config.json', /missing/);
  });
  it('missing model.safetensors', async () => {
    const dir = copyModel();
    rmSync(join(dir, 'model.safetensors'));
    await expectLoadError(dir, 'model.safetensors', /missing/);
  });
  it('missing tokenizer when required', async () => {
    await assert.rejects(loadModelDir(copyModel(), { requireTokenizer: true }), /no tokenizer files/);
  });
  it('bad config.json JSON', async () => {
    const dir = copyModel();
    writeFileSync(join(dir, 'config.json'), '{"n_embd": 48,');
    await expectLoadError(dir, 'config.json', /invalid JSON/);
  });
  it('bad generation_config.json JSON', async () => {
    const dir = copyModel();
    writeFileSync(join(dir, 'generation_config.json'), 'nope');
    await expectLoadError(dir, 'generation_config.json', /invalid JSON/);
  });
  it('missing config field', async () => {
    const dir = copyModel();
    editConfig(dir, (c) => delete c.n_head);
    await expectLoadError(dir, 'config.json', /missing field "n_head"/);
  });
  it('n_ctx stands in for a missing n_positions', async () => {
    const dir = copyModel();
    editConfig(dir, (c) => {
      c.n_ctx = c.n_positions;
      delete c.n_positions;
    });
    assert.equal((await loadModelDir(dir)).config.nPositions, 64);
  });
  it('n_embd not divisible by n_head', async () => {
    const dir = copyModel();
    editConfig(dir, (c) => {
      c.n_head = 5;
    });
    await expectLoadError(dir, 'config.json', /n_embd \(48\) must be divisible by n_head \(5\)/);
  });
  it('unsupported activation_function, n_inner, model_type', async () => {
    const a = copyModel();
    editConfig(a, (c) => {
      c.activation_function = 'relu';
    });
    await expectLoadError(a, 'config.json', /activation_function "relu" is not supported/);
    const b = copyModel();
    editConfig(b, (c) => {
      c.n_inner = 100;
    });
    await expectLoadError(b, 'config.json', /n_inner 100 is not supported/);
    const d = copyModel();
    editConfig(d, (c) => {
      c.model_type = 'llama';
    });
    await expectLoadError(
      d,
      'config.json',
      /architecture GPT2LMHeadModel \(model_type "llama"\) is not GPT-2: only GPT2LMHeadModel/,
    );
  });
  it('eos id outside the vocabulary', async () => {
    const dir = copyModel();
    editConfig(dir, (c) => {
      c.eos_token_id = 512;
    });
    await expectLoadError(dir, 'config.json', /eos_token_id" must be a token id below vocab_size 512/);
  });
  it('truncated model.safetensors', async () => {
    const dir = copyModel();
    const file = join(dir, 'model.safetensors');
    writeFileSync(file, readFileSync(file).subarray(0, 100_000));
    await expectLoadError(dir, 'model.safetensors', /run past the data section/);
  });
  it('oversized model.safetensors (trailing bytes)', async () => {
    const dir = copyModel();
    const file = join(dir, 'model.safetensors');
    writeFileSync(file, Buffer.concat([readFileSync(file), Buffer.alloc(16)]));
    await expectLoadError(dir, 'model.safetensors', /16 trailing bytes/);
  });
  it('header length beyond the file', async () => {
    const dir = copyModel();
    const file = join(dir, 'model.safetensors');
    const bytes = readFileSync(file);
    bytes.writeBigUInt64LE(10_000_000n, 0);
    writeFileSync(file, bytes);
    await expectLoadError(dir, 'model.safetensors', /header length 10000000 runs past the end/);
  });
  it('missing tensor', async () => {
    const dir = copyModel();
    editWeights(dir, (t) => t.delete('transformer.h.1.mlp.c_fc.bias'));
    await expectLoadError(dir, 'model.safetensors', /missing tensors transformer\.h\.1\.mlp\.c_fc\.bias/);
  });
  it('extra tensor', async () => {
    const dir = copyModel();
    editWeights(dir, (t) =>
      t.set('transformer.h.3.ln_1.weight', { shape: [48], data: new Float32Array(48) }),
    );
    await expectLoadError(dir, 'model.safetensors', /unexpected tensors transformer\.h\.3\.ln_1\.weight/);
  });
  it('wrong shape', async () => {
    const dir = copyModel();
    editWeights(dir, (t) =>
      t.set('transformer.h.0.attn.c_attn.weight', { shape: [144, 48], data: new Float32Array(144 * 48) }),
    );
    await expectLoadError(
      dir,
      'model.safetensors',
      /tensor transformer\.h\.0\.attn\.c_attn\.weight has shape \[144,48\], expected \[48,144\]/,
    );
  });
  it('wrong dtype', async () => {
    const dir = copyModel();
    editWeights(dir, (t) =>
      t.set('transformer.ln_f.bias', { dtype: 'I64', shape: [48], data: new BigInt64Array(48) }),
    );
    await expectLoadError(
      dir,
      'model.safetensors',
      /tensor transformer\.ln_f\.bias has dtype I64, expected F32/,
    );
  });
  it('tied lm_head that differs from wte', async () => {
    const dir = copyModel();
    editWeights(dir, (t) => t.set('lm_head.weight', { shape: [512, 48], data: new Float32Array(512 * 48) }));
    await expectLoadError(dir, 'model.safetensors', /lm_head\.weight differs from transformer\.wte\.weight/);
  });
  it('untied config without lm_head.weight', async () => {
    const dir = copyModel();
    editConfig(dir, (c) => {
      c.tie_word_embeddings = false;
    });
    await expectLoadError(dir, 'model.safetensors', /missing tensors lm_head\.weight/);
  });
  it('vocab size not matching the tokenizer', async () => {
    const dir = copyModel();
    await writeTokenizerFiles(dir, smallTokenizerData(300));
    await expectLoadError(dir, 'config.json', /vocab_size 512 does not match the tokenizer's 300 tokens/);
  });
  it('a matching tokenizer loads', async () => {
    const dir = copyModel();
    await writeTokenizerFiles(dir, smallTokenizerData(512));
    const loaded = await loadModelDir(dir, { requireTokenizer: true });
    assert.equal(Object.keys(loaded.tokenizerData!.vocab).length, 512);
  });
});

/** float32 → IEEE half bits for values a half holds exactly (normal range), as a test writer needs. */
function exactHalf(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const exp = Math.floor(Math.log2(a));
  const frac = (a / 2 ** exp - 1) * 1024;
  assert.ok(Number.isInteger(frac) && exp >= -14 && exp <= 15, `${v} is not an exact half`);
  return sign | ((exp + 15) << 10) | frac;
}

/** A safetensors file written by hand: tensors laid out in the given order, with F32, F16 or BF16 data. */
function rawSafetensors(
  tensors: Array<{ name: string; dtype: 'F32' | 'F16' | 'BF16'; shape: number[]; data: Float32Array }>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    let bytes: Uint8Array;
    if (t.dtype === 'F32') bytes = new Uint8Array(Float32Array.from(t.data).buffer);
    else if (t.dtype === 'BF16') {
      const words = new Uint32Array(Float32Array.from(t.data).buffer);
      bytes = new Uint8Array(Uint16Array.from(words, (w) => w >>> 16).buffer);
    } else bytes = new Uint8Array(Uint16Array.from(t.data, exactHalf).buffer);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let pos = 8 + json.byteLength;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

describe('loadModelDir reads each tensor from its place in the file', () => {
  it('F32 tensors at unaligned offsets in reverse order, F16 and BF16 ones widened, a tied lm_head compared, a causal-mask buffer skipped', async () => {
    const layout = parameterLayout(config);
    const want = Float32Array.from(params);
    const bf16 = layout.byName.get('transformer.h.0.mlp.c_fc.weight')!;
    const half = layout.byName.get('transformer.ln_f.weight')!;
    // BF16 keeps the top 16 bits; the F16 tensor holds values a half stores exactly.
    const bits = new Uint32Array(want.buffer);
    for (let i = bf16.offset; i < bf16.offset + bf16.size; i++) bits[i] &= 0xffff0000;
    for (let i = 0; i < half.size; i++) want[half.offset + i] = (i - half.size / 2) / 64;
    const wte = layout.byName.get('transformer.wte.weight')!;
    const list = layout.tensors.map((t) => ({
      name: t.hfName,
      dtype: t === bf16 ? ('BF16' as const) : t === half ? ('F16' as const) : ('F32' as const),
      shape: t.shape,
      data: want.subarray(t.offset, t.offset + t.size),
    }));
    list.push({
      name: 'lm_head.weight',
      dtype: 'F32',
      shape: wte.shape,
      data: want.subarray(wte.offset, wte.offset + wte.size),
    });
    // An odd-sized header puts every tensor at an offset that is not a multiple of 4.
    list.push({ name: 'h.0.attn.bias', dtype: 'F16', shape: [1, 1, 1, 3], data: Float32Array.of(1, 0, 1) });
    list.reverse();
    const dir = copyModel();
    const file = rawSafetensors(list);
    writeFileSync(join(dir, 'model.safetensors'), file);
    const loaded = await loadModelDir(dir, { sharedParams: true });
    const diff = maxAbsDiff(loaded.params, want);
    console.log(
      `${list.length} tensors read in place (header ${new DataView(file.buffer).getBigUint64(0, true)} bytes): largest difference ${diff}`,
    );
    assert.equal(diff, 0);
    assert.deepEqual(Array.from(loaded.params), Array.from(want));
    assert.deepEqual(Array.from(await readEveryTensor(dir)), Array.from(want), 'openModelDir reads the same');
  });
});

describe('loadModelDir finds every non-finite weight and loads into shared memory on request', () => {
  it('NaN, +Infinity and -Infinity near the start, middle and end of tensors are each named with their index', async () => {
    const layout = parameterLayout(config);
    const wte = layout.byName.get('transformer.wte.weight')!;
    const last = layout.tensors[layout.tensors.length - 1];
    const cases: Array<[string, number, number]> = [
      [wte.hfName, 0, Number.NaN],
      [wte.hfName, 1001, Number.POSITIVE_INFINITY],
      [last.hfName, last.size - 1, Number.NEGATIVE_INFINITY],
      [last.hfName, last.size - 3, Number.NaN],
    ];
    for (const [name, index, value] of cases) {
      const spec = layout.byName.get(name)!;
      const broken = Float32Array.from(params);
      broken[spec.offset + index] = value;
      const dir = join(tmp, `nonfinite-${counter++}`);
      await saveModelDir(dir, { config, params: broken, tokenizerData: null });
      const named = (e: Error) =>
        e.message.includes(`tensor ${name} holds a non-finite value at index ${index}`);
      await assert.rejects(loadModelDir(dir), named, `${value} at ${name}[${index}]`);
      // Read into the kernels' memory, the scan is the WebAssembly kernel's; read in pieces, the index is the tensor's.
      const arena = wasmArena();
      if (arena)
        await assert.rejects(
          loadModelDir(dir, { paramsInto: (n) => arena.f32(arena.alloc(n * 4), n) }),
          named,
          `kernel scan: ${value} at ${name}[${index}]`,
        );
      await assert.rejects(readEveryTensor(dir), named, `openModelDir: ${value} at ${name}[${index}]`);
    }
    // The largest finite float32 and subnormals are finite.
    const edge = Float32Array.from(params);
    edge[0] = 3.4028234663852886e38;
    edge[1] = -1.4e-45;
    const dir = join(tmp, `nonfinite-${counter++}`);
    await saveModelDir(dir, { config, params: edge, tokenizerData: null });
    const loaded = await loadModelDir(dir, { sharedParams: true });
    assert.equal(loaded.params[0], edge[0]);
    assert.ok(loaded.params.buffer instanceof SharedArrayBuffer);
    console.log(
      `non-finite weights named at ${cases.length} positions; shared load of ${loaded.params.length} floats`,
    );
  });
});
