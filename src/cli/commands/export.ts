// `tiny-llm export`: write a model directory in another format (GGUF for llama.cpp / Ollama / node-llama-cpp,
// ONNX with an explicit KV cache for onnxruntime).
import path from 'node:path';
import { CheckpointError, loadModelDir, modelDirWeights, Q8_WEIGHTS_FILE } from '../../io/checkpoint.js';
import { exportGguf } from '../../io/gguf.js';
import { exportOnnx } from '../../io/onnx/gpt2-onnx.js';
import { type Command, parseCommandArgs, requireArg, UsageError } from '../command.js';

const usage = `usage: tiny-llm export --model-dir D --format gguf|onnx --out FILE [--quantize q8_0|f16] [--name NAME]

  --model-dir D      model directory (Hugging Face layout; gguf also needs its tokenizer files)
  --format gguf      GGUF v3, architecture gpt2, tensors F32
  --format onnx      ONNX (opset 17, F32) with KV cache: input_ids, past_key, past_value →
                     logits, present_key, present_value (past/present [layers, batch, heads, len, head size])
  --quantize q8_0    gguf only: the matrices as Q8_0 (blocks of 32 int8 + one f16 scale) where their rows
                     split into 32-blocks, as llama.cpp's Q8_0 files; norms, biases, positions stay F32
  --quantize f16     gguf only: the matrices as F16
  --out FILE         where to write it (written atomically)
  --name NAME        name stored in the file (GGUF general.name, ONNX graph name; default tiny-llm)`;

export const command: Command = {
  name: 'export',
  summary: 'export a model directory to GGUF or ONNX',
  usage,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      'model-dir': { type: 'string' },
      format: { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
      quantize: { type: 'string' },
    });
    const modelDir = requireArg('model-dir', values['model-dir']);
    const format = requireArg('format', values.format);
    const out = requireArg('out', values.out);
    const quantize = values.quantize;
    if (quantize !== undefined && quantize !== 'q8_0' && quantize !== 'f16')
      throw new UsageError(`--quantize must be q8_0 or f16, got "${quantize}"`);
    if (quantize !== undefined && format !== 'gguf')
      throw new UsageError('--quantize applies to --format gguf only');
    if ((await modelDirWeights(modelDir)) === 'q8_0') {
      const file = path.join(modelDir, Q8_WEIGHTS_FILE);
      if (format === 'onnx')
        throw new CheckpointError(
          file,
          `holds int8 (Q8_0) weights; the ONNX export is float32: export from a model directory ` +
            'written without --quantize',
        );
      if (format === 'gguf')
        throw new CheckpointError(
          file,
          `already is a Q8_0 GGUF (tokenizer inside): use it as it is, or export from a model ` +
            'directory written without --quantize',
        );
    }
    if (format === 'onnx') {
      const model = await loadModelDir(modelDir, { requireTokenizer: false });
      await exportOnnx(out, { config: model.config, params: model.params, name: values.name });
      process.stderr.write(`wrote ${out} (ONNX, ${model.params.length} parameters)\n`);
      return 0;
    }
    if (format !== 'gguf') throw new UsageError(`--format must be gguf or onnx, got "${format}"`);
    const model = await loadModelDir(modelDir, { requireTokenizer: true });
    await exportGguf(out, {
      config: model.config,
      params: model.params,
      tokenizerData: model.tokenizerData!,
      name: values.name,
      quantize,
    });
    process.stderr.write(
      `wrote ${out} (GGUF ${quantize ? quantize.toUpperCase() : 'F32'}, ${model.params.length} parameters)\n`,
    );
    return 0;
  },
};
