// Builds what `tiny-llm` runs into dist/cli/: the whole CLI in one CommonJS bundle (one instance of every module, the request validators compiled in), its worker threads' bundles, the launcher that runs the CLI through V8's code cache, and that cache.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'cli');
const rel = (file) => relative(root, file);
const kib = (file) => `${(readFileSync(file).length / 1024).toFixed(0)} KiB`;

/** Runs a Node script of this build in a fresh process; fails the build with its output when it fails. */
function runNode(args) {
  const run = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  if (run.status !== 0) {
    process.stderr.write(run.stdout + run.stderr);
    throw new Error(`node ${args.join(' ')} failed`);
  }
  return run.stdout.trim();
}

/**
 * One minified CommonJS file for Node (smaller to parse than modules, and one V8 code cache covers it); names
 * kept for the packages' error messages and plugin names. `import.meta.url` becomes the file's own URL.
 */
const nodeBundle = {
  bundle: true,
  minify: true,
  keepNames: true,
  format: 'cjs',
  platform: 'node',
  target: ['node20'],
  logLevel: 'warning',
  banner: { js: "const __importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': '__importMetaUrl' },
  // Loaded only for gs:// model caches and fetches, and large: it stays a package, required when used.
  external: ['@google-cloud/storage'],
  // import() of that package becomes require(): the CLI's bundle runs as a vm.Script (for its code cache),
  // which has no loader for import().
  supported: { 'dynamic-import': false },
};

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });

// The request validators ajv generates for our route schemas, recorded from the sources (tsx), bundled into
// the CLI in place of src/server/startup/precompiled-validators.ts.
const validatorsFile = join(outDir, 'validators.cjs');
const recorded = runNode(['--import', 'tsx', join(root, 'scripts', 'record-validators.ts'), validatorsFile]);
const withValidators = {
  name: 'precompiled-validators',
  setup(b) {
    b.onLoad({ filter: /[\\/]startup[\\/]precompiled-validators\.ts$/ }, () => ({
      contents: `import validators from ${JSON.stringify(validatorsFile)};\nexport const precompiledValidators = validators;\n`,
      loader: 'js',
      resolveDir: outDir,
    }));
  },
};

const cliFile = join(outDir, 'cli.cjs');
await build({
  ...nodeBundle,
  entryPoints: [join(root, 'src', 'cli', 'bundle.ts')],
  outfile: cliFile,
  plugins: [withValidators],
});
// Worker threads run their own bundles, found beside the CLI's (see worker-file.ts, data-parallel.ts).
const workers = [
  [join(root, 'src', 'server', 'workers', 'generation-worker.ts'), join(outDir, 'generation-worker.cjs')],
  [join(root, 'src', 'train', 'train-worker.ts'), join(outDir, 'train-worker.cjs')],
];
for (const [entry, outfile] of workers) await build({ ...nodeBundle, entryPoints: [entry], outfile });
// The launcher: an ES module bin/tiny-llm.js imports, small, outside the bundle it runs.
const launchFile = join(outDir, 'launch.js');
await build({
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: ['node20'],
  logLevel: 'warning',
  entryPoints: [join(root, 'src', 'cli', 'launch.ts')],
  outfile: launchFile,
});

// The code cache is written by a fresh process of the Node that will run the CLI, after its warm-up.
const cache = runNode([join(root, 'scripts', 'warm-code-cache.mjs')]);
console.log(
  `cli: ${rel(cliFile)} (${kib(cliFile)}, ${recorded} compiled in), ${workers
    .map(([, file]) => `${rel(file)} (${kib(file)})`)
    .join(', ')}, ${rel(launchFile)}; ${cache}`,
);
