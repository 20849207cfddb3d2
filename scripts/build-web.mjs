// Builds the chat page: bundles web/src/main.ts into dist/web/app.js and copies the HTML, CSS and icon beside it.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist', 'web');

/** Writes through a temp file and a rename so a half-written asset is never served. */
async function writeAtomic(path, contents) {
  const temp = `${path}.tmp-${process.pid}`;
  await writeFile(temp, contents);
  await rename(temp, path);
}

await mkdir(outDir, { recursive: true });
const result = await build({
  entryPoints: [join(root, 'web', 'src', 'main.ts')],
  outfile: join(outDir, 'app.js'),
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'iife',
  target: ['es2020'],
  platform: 'browser',
  write: false,
  logLevel: 'warning',
});
for (const file of result.outputFiles) await writeAtomic(file.path, file.contents);
for (const name of ['index.html', 'styles.css', 'favicon.svg']) {
  await writeAtomic(join(outDir, name), await readFile(join(root, 'web', name)));
}
const bytes = result.outputFiles.find((f) => f.path.endsWith('app.js'))?.contents.length ?? 0;
console.log(`web: dist/web/app.js (${(bytes / 1024).toFixed(1)} KiB), index.html, styles.css, favicon.svg`);
