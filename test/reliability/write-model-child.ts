// Child process for the fault tests: saves a large model directory with saveModelDir, so the parent can SIGKILL it mid-write.
import { parameterLayout } from '../../src/engine/layout.js';
import { saveModelDir } from '../../src/io/checkpoint.js';
import { tinyConfig } from '../helpers/tiny-model.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: write-model-child.ts <model-dir>');
// n_embd 256, 8 layers, 1024 positions: about 19 M parameters, a 76 MB weights file that takes a while to write.
const config = { ...tinyConfig(1024), nEmbd: 256, nLayer: 8, nHead: 8 };
const params = new Float32Array(parameterLayout(config).total);
for (let i = 0; i < params.length; i++) params[i] = Math.sin(i) * 0.02;
process.stdout.write(`writing ${params.length} parameters\n`);
await saveModelDir(dir, { config, params, tokenizerData: null });
process.stdout.write('saved\n');
