// Hugging Face checkpoints as other tools store them: F16/BF16 and sharded copies of the golden multi-v512
// model give its logits within the format's rounding; Hub-style names, buffers and stored tied heads load;
// every broken or foreign checkpoint is refused at load with the file and the reason.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { GPT2 } from '../../src/engine/model.js';
import { loadModelDir } from '../../src/io/checkpoint.js';
import { fixture, maxAbsDiff, readReferenceTensors } from '../helpers/fixtures.js';
import { readEveryTensor, roundTo, type StoredDtype, writeVariant } from '../helpers/hf-dirs.js';

const golden = fixture('multi-v512');
const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-hf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const fresh = () => join(tmp, `case-${counter++}`);

const inputs = Int32Array.from(
  readReferenceTensors(fixture('multi-v512', 'reference-logits.safetensors')).get('input_ids')!.data,
);

async function logitsOf(dir: string): Promise<{ logits: Float32Array; params: Float32Array }> {
  const loaded = await loadModelDir(dir);
  const model = new GPT2(loaded.config, loaded.params);
  model.forward(inputs, 1, inputs.length);
  return { logits: model.logits.slice(0, inputs.length * loaded.config.vocabSize), params: loaded.params };
}

const original = logitsOf(golden);

describe('F16, BF16 and sharded checkpoints give the F32 original logits within the rounding', () => {
  const cases: Array<[string, { dtype?: StoredDtype; shards?: number }, number]> = [
    // Bounds: a few times the largest difference seen (printed), far below what a wrong tensor gives (~1).
    ['F16', { dtype: 'F16' }, 5e-3],
    ['BF16', { dtype: 'BF16' }, 5e-2],
    ['F32 in 3 shards', { shards: 3 }, 0],
    ['BF16 in 2 shards', { dtype: 'BF16', shards: 2 }, 5e-2],
  ];
  for (const [label, options, bound] of cases) {
    it(label, async () => {
      const dir = fresh();
      writeVariant(golden, dir, options);
      const ref = await original;
      const got = await logitsOf(dir);
      // The loaded weights are exactly the stored values widened to float32.
      const expected = roundTo(options.dtype ?? 'F32', ref.params);
      assert.equal(maxAbsDiff(got.params, expected), 0, 'weights widened exactly');
      // Read a piece at a time (quantising at load), the same values.
      assert.equal(maxAbsDiff(await readEveryTensor(dir), expected), 0, 'openModelDir widens the same');
      const diff = maxAbsDiff(got.logits, ref.logits);
      console.log(`# ${label}: largest logit difference from F32 ${diff.toExponential(3)} (bound ${bound})`);
      assert.ok(diff <= bound, `${label}: ${diff} > ${bound}`);
      if (options.dtype && options.dtype !== 'F32') assert.ok(diff > 0, 'rounding is visible');
    });
  }

  it('Hub-style checkpoints: no "transformer." prefix, attn.bias / attn.masked_bias buffers, a stored tied lm_head', async () => {
    const dir = fresh();
    writeVariant(golden, dir, { stripPrefix: true, buffers: true, storeTiedHead: true });
    const ref = await original;
    const got = await logitsOf(dir);
    const diff = maxAbsDiff(got.logits, ref.logits);
    console.log(`# Hub-style names: largest logit difference ${diff}`);
    assert.equal(diff, 0);
  });
});

/** Loading `dir` fails with a message that names `file` (relative to dir) and matches `reason`. */
async function refused(dir: string, file: string, reason: RegExp): Promise<void> {
  const check = (err: Error) => {
    assert.ok(err.message.startsWith(join(dir, file)), `names ${file}: ${err.message}`);
    assert.match(err.message, reason);
    return true;
  };
  await assert.rejects(loadModelDir(dir), (err: Error) => {
    check(err);
    console.log(`# refused: ${err.message.replace(dir, '<dir>')}`);
    return true;
  });
  // The loader that reads a piece at a time (quantising at load) refuses it for the same reason.
  await assert.rejects(readEveryTensor(dir), check, 'openModelDir');
}

function editJson(file: string, edit: (c: Record<string, unknown>) => void): void {
  const c = JSON.parse(readFileSync(file, 'utf8'));
  edit(c);
  writeFileSync(file, JSON.stringify(c, null, 2));
}

describe('foreign and broken checkpoints are refused with the file and the reason', () => {
  it('pytorch_model.bin only: names the file and says we read safetensors', async () => {
    const dir = fresh();
    writeVariant(golden, dir);
    unlinkSync(join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'pytorch_model.bin'), 'PK\x03\x04 not really a zip');
    await refused(dir, 'pytorch_model.bin', /PyTorch pickle checkpoint; only safetensors weights are read/);
  });

  it('another architecture is named', async () => {
    const a = fresh();
    writeVariant(golden, a);
    editJson(join(a, 'config.json'), (c) => {
      c.architectures = ['LlamaForCausalLM'];
      c.model_type = 'llama';
    });
    await refused(a, 'config.json', /architecture LlamaForCausalLM \(model_type "llama"\) is not GPT-2/);
    const b = fresh();
    writeVariant(golden, b);
    editJson(join(b, 'config.json'), (c) => {
      c.architectures = ['GPT2ForSequenceClassification'];
    });
    await refused(b, 'config.json', /architecture GPT2ForSequenceClassification is not supported/);
  });

  it('settings we do not compute are refused by name; the fields real checkpoints carry are accepted', async () => {
    for (const [field, value, reason] of [
      ['scale_attn_by_inverse_layer_idx', true, /scale_attn_by_inverse_layer_idx true is not supported/],
      ['scale_attn_weights', false, /scale_attn_weights false is not supported/],
      ['activation_function', 'gelu', /activation_function "gelu" is not supported/],
      ['add_cross_attention', true, /add_cross_attention true is not supported/],
    ] as const) {
      const dir = fresh();
      writeVariant(golden, dir);
      editJson(join(dir, 'config.json'), (c) => {
        c[field] = value;
      });
      await refused(dir, 'config.json', reason);
    }
    // The Hub's gpt2 config.json carries n_ctx, task_specific_params, reorder_and_upcast_attn etc.
    const dir = fresh();
    writeVariant(golden, dir, { stripPrefix: true });
    editJson(join(dir, 'config.json'), (c) => {
      c.n_ctx = c.n_positions;
      c.reorder_and_upcast_attn = true;
      c.activation_function = 'gelu_pytorch_tanh';
      c.task_specific_params = { 'text-generation': { do_sample: true, max_length: 50 } };
      c.architectures = ['GPT2Model'];
    });
    const loaded = await loadModelDir(dir);
    assert.equal(loaded.config.nPositions, 64);
  });

  it('an absurd n_embd is refused from config.json, before any buffer is sized from it', async () => {
    const a = fresh();
    writeVariant(golden, a);
    editJson(join(a, 'config.json'), (c) => {
      c.n_embd = 1_000_000;
    });
    await refused(a, 'config.json', /n_embd 1000000, n_layer 3, .* parameters, more than this engine holds/);
    // Large but within bounds: the header's shapes disagree with it, and that is what is said.
    const b = fresh();
    writeVariant(golden, b);
    editJson(join(b, 'config.json'), (c) => {
      c.n_embd = 4800;
    });
    await refused(
      b,
      'model.safetensors',
      /tensor transformer\.\S+ has shape \[\d+(,\d+)?\], expected \[\d+(,\d+)?\] \(config\.json: .*n_embd 4800\)/,
    );
  });

  it('a shard that is missing, truncated, or disagrees with the index', async () => {
    const shard2 = 'model-00002-of-00003.safetensors';
    const a = fresh();
    writeVariant(golden, a, { shards: 3 });
    unlinkSync(join(a, shard2));
    await refused(a, shard2, /missing \(named by model\.safetensors\.index\.json\)/);

    const b = fresh();
    writeVariant(golden, b, { shards: 3 });
    const bytes = readFileSync(join(b, shard2));
    writeFileSync(join(b, shard2), bytes.subarray(0, bytes.length - 100));
    await refused(b, shard2, /run past the data section|trailing bytes|truncated/);

    const c = fresh();
    writeVariant(golden, c, { shards: 3 });
    editJson(join(c, 'model.safetensors.index.json'), (index) => {
      const map = index.weight_map as Record<string, string>;
      map['transformer.wte.weight'] = shard2;
    });
    await refused(
      c,
      'model.safetensors.index.json',
      /weight_map puts tensor transformer\.wte\.weight in model-00002/,
    );

    const d = fresh();
    writeVariant(golden, d, { shards: 3 });
    editJson(join(d, 'model.safetensors.index.json'), (index) => {
      const map = index.weight_map as Record<string, string>;
      map['transformer.wte.weight'] = '../elsewhere.safetensors';
    });
    await refused(d, 'model.safetensors.index.json', /must name a \.safetensors file in the same directory/);
  });

  it('a header that claims more than the file holds, and a missing tensor across shards', async () => {
    const a = fresh();
    writeVariant(golden, a, { dtype: 'F16' });
    const file = join(a, 'model.safetensors');
    const bytes = readFileSync(file);
    bytes.writeBigUInt64LE(BigInt(bytes.length), 0);
    writeFileSync(file, bytes);
    await refused(a, 'model.safetensors', /header length \d+ runs past the end of the file/);

    const b = fresh();
    writeVariant(golden, b, { shards: 2 });
    editJson(join(b, 'config.json'), (c) => {
      c.n_layer = 4;
    });
    await refused(b, '', /missing tensors transformer\.h\.3\.ln_1\.weight/);
  });

  it('an untied checkpoint is supported: its stored lm_head is used', async () => {
    const dir = fresh();
    writeVariant(golden, dir, { storeTiedHead: true });
    editJson(join(dir, 'config.json'), (c) => {
      c.tie_word_embeddings = false;
    });
    const loaded = await loadModelDir(dir);
    assert.equal(loaded.config.tieWordEmbeddings, false);
    cpSync(join(golden, 'config.json'), join(dir, 'config.json'));
    const tied = await loadModelDir(dir);
    assert.equal(loaded.params.length, tied.params.length + 512 * 48);
  });
});
