// Bundles the server's HTTP stack (dist/server + fastify, pino, prom-client, helmet, rate-limit) into one file, dist/server/http-stack.js, that `serve` loads in far less time than the packages' hundreds of modules.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const serverDir = join(root, 'dist', 'server');
const outfile = join(serverDir, 'http-stack.js');

/**
 * Our own modules outside dist/server (engine, io, tokenizer) and the worker-pool modules stay separate
 * files: the pool keeps the prestarted workers in module state that serve.ts shares, and worker files are
 * found next to it. Only dist/server's own modules and the packages go into the bundle.
 */
const keepOwnModulesSeparate = {
  name: 'keep-own-modules-separate',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (args) => {
      const target = join(args.resolveDir, args.path);
      const inDist = target.startsWith(join(root, 'dist') + sep);
      const inServer =
        target.startsWith(serverDir + sep) && !target.startsWith(join(serverDir, 'workers') + sep);
      if (!inDist || inServer) return undefined;
      let path = relative(serverDir, target).split(sep).join('/');
      if (!path.startsWith('.')) path = `./${path}`;
      return { path, external: true };
    });
  },
};

/** Writes through a temp file and a rename so a half-written bundle is never loaded. */
async function writeAtomic(path, contents) {
  const temp = `${path}.tmp-${process.pid}`;
  await writeFile(temp, contents);
  await rename(temp, path);
}

const result = await build({
  stdin: {
    contents: "export { createLogger } from './logging.js';\nexport { startServer } from './server.js';\n",
    resolveDir: serverDir,
    sourcefile: 'http-stack-entry.js',
    loader: 'js',
  },
  outfile,
  bundle: true,
  // Smaller to parse; names kept for the packages' error messages and plugin names.
  minify: true,
  keepNames: true,
  format: 'esm',
  platform: 'node',
  target: ['node20'],
  // The packages are CommonJS: give the bundle a real require for Node's built-in modules.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);",
  },
  plugins: [keepOwnModulesSeparate],
  write: false,
  logLevel: 'warning',
});
for (const file of result.outputFiles) await writeAtomic(file.path, file.contents);
const size = (await readFile(outfile)).length;
console.log(`server: ${relative(root, outfile)} (${(size / 1024).toFixed(0)} KiB)`);
