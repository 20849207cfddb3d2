// Proves what `npm run build` makes (scripts/build-cli.mjs): the main thread runs one bundle holding one definition of
// each of our classes (so `instanceof` and module state mean the same as in the sources), the workers run bundles of
// their own, and the built server starts from the bundle's code cache with the validators compiled in.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertBuildCurrent, type BuiltServer, startBuiltServer } from '../helpers/built-server.js';
import { repoRoot } from '../helpers/fixtures.js';

const outDir = join(repoRoot, 'dist', 'cli');

/** Names of the classes declared in src/. */
function ourClasses(dir = join(repoRoot, 'src')): string[] {
  const names: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) names.push(...ourClasses(path));
    else if (entry.name.endsWith('.ts'))
      for (const m of readFileSync(path, 'utf8').matchAll(/^(?:export )?class (\w+)/gm)) names.push(m[1]);
  }
  return names;
}

/** Relative require() calls left in a bundle: files of ours it would load beside itself. */
function ownRequires(text: string): string[] {
  return [...text.matchAll(/require\("(\.[^"]*)"\)/g)].map((m) => m[1]);
}

describe('the build', () => {
  before(() => assertBuildCurrent());

  it('the main thread loads one bundle (plus its launcher) with one definition of each of our classes', () => {
    const bundle = readFileSync(join(outDir, 'cli.cjs'), 'utf8');
    const launcher = readFileSync(join(outDir, 'launch.js'), 'utf8');
    assert.deepEqual(ownRequires(bundle), [], 'the bundle requires files of ours');
    // The launcher imports nothing of ours either: it reads the bundle and runs it.
    assert.deepEqual(
      [...launcher.matchAll(/from\s*"(\.[^"]*)"/g)].map((m) => m[1]),
      [],
    );
    const classes = ourClasses();
    const counts = classes.map((name) => {
      // esbuild keeps each class's name as a string (keepNames): `…(this,"Name")` once per definition.
      const defined = bundle.split(`(this,"${name}")`).length - 1;
      return [name, defined + (launcher.split(`(this,"${name}")`).length - 1)] as const;
    });
    const twice = counts.filter(([, n]) => n > 1);
    console.log(
      `${classes.length} classes of ours; in the main thread's code: ${counts.filter(([, n]) => n === 1).length} defined once, ${twice.length} more than once, the rest not loaded there`,
    );
    assert.deepEqual(twice, [], 'a class of ours is defined more than once where the main thread runs');
    for (const name of ['ApiError', 'ContextOverflow', 'WorkerPool', 'Job', 'ModelLoad'])
      assert.equal(Object.fromEntries(counts)[name], 1, `${name} is not in the bundle once`);
  });

  it('each worker thread runs a standalone bundle; neither holds the HTTP stack', () => {
    for (const file of ['generation-worker.cjs', 'train-worker.cjs']) {
      const text = readFileSync(join(outDir, file), 'utf8');
      assert.deepEqual(ownRequires(text), [], `${file} requires files of ours`);
      assert.doesNotMatch(text, /\bimport\.meta\b/, `import.meta left in ${file}`);
      assert.doesNotMatch(text, /"fastify"|(this,"ApiError")/, `${file} holds the HTTP stack`);
    }
  });
});

describe('the built CLI', () => {
  it('a serving command that ends at once (bad flags) exits without waiting for the worker its launcher booted', () => {
    assertBuildCurrent();
    const started = performance.now();
    const run = spawnSync(process.execPath, [join(repoRoot, 'bin', 'tiny-llm.js'), 'serve', '--workers=0'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    const ms = performance.now() - started;
    console.log(
      `serve --workers=0: exit ${run.status} after ${ms.toFixed(0)} ms: ${run.stderr.trim().split('\n').at(-1)}`,
    );
    assert.equal(run.status, 2, run.stderr);
    assert.match(run.stderr, /--workers must be >= 1, got 0/);
  });
});

describe('the built server starts as the build prepared it', () => {
  let server: BuiltServer;
  before(async () => {
    server = await startBuiltServer({ workers: 1 });
  });
  after(() => server.close());

  it("from the bundle's code cache (written by the build with this Node), with the validators compiled in", () => {
    const line = /start-up: [^"]*/.exec(server.output())?.[0];
    console.log(line);
    assert.equal(line, 'start-up: CLI code cache used; request validators compiled at build time');
  });
});
