// Proves the bench's cold start on the image's Node runs a copy of the build whose code cache that Node wrote,
// leaves the checkout's dist/ alone, serves from the copy, and reads the image's Node major from the Dockerfile.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { imageNodeMajor, prepareImageRuntime } from '../../bench/lib/image-runtime.js';
import { measureColdStart } from '../../scripts/measure-cold-start.js';
import { repoRoot } from '../helpers/fixtures.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

const built = existsSync(join(repoRoot, 'dist', 'cli', 'cli.cjs'));
const CACHES = ['cli/cli.cjs.cache'];

describe('the image Node major named by the Dockerfile', () => {
  it("is the runtime stage's distroless nodejs major (24 in ours), not the build stage's", () => {
    const dockerfile = readFileSync(join(repoRoot, 'docker', 'Dockerfile'), 'utf8');
    assert.equal(imageNodeMajor(dockerfile), 24);
    assert.equal(
      imageNodeMajor(
        'FROM node:22-bookworm-slim AS build\nFROM gcr.io/distroless/nodejs20-debian12:nonroot\n',
      ),
      20,
    );
    assert.equal(imageNodeMajor('FROM node:24-bookworm-slim\n'), null);
  });
});

describe('a copy of the build for another Node', { skip: !built && 'dist/ is not built' }, () => {
  let tiny: TinyModel;
  before(async () => {
    tiny = await createTinyModel({ seed: 9 });
  });
  after(() => tiny?.remove());

  it("writes the copy's code cache with the given Node, serves from it, and leaves dist/ as it was", async () => {
    const before = CACHES.map((c) => {
      const file = join(repoRoot, 'dist', c);
      return existsSync(file) ? statSync(file).mtimeMs : null;
    });
    const runtime = prepareImageRuntime(repoRoot, process.execPath);
    try {
      assert.equal(runtime.version, process.version);
      const copyDist = join(runtime.bin, '..', '..', 'dist');
      for (const c of CACHES) {
        const header = readFileSync(join(copyDist, c)).subarray(0, 400).toString('latin1');
        assert.match(
          header,
          new RegExp(`node ${process.version.replace(/\./g, '\\.')}`),
          `${c} names the Node that wrote it`,
        );
      }
      const after = CACHES.map((c) => {
        const file = join(repoRoot, 'dist', c);
        return existsSync(file) ? statSync(file).mtimeMs : null;
      });
      assert.deepEqual(after, before, "the checkout's own caches were not rewritten");
      // The spawn goes through the Node it is given: a wrapper that leaves a mark, then runs this one.
      const wrapper = join(tiny.dir, '..', 'node-wrapper.sh');
      const mark = join(tiny.dir, '..', 'wrapper-ran');
      writeFileSync(wrapper, `#!/bin/sh\ntouch '${mark}'\nexec '${process.execPath}' "$@"\n`);
      chmodSync(wrapper, 0o755);
      const r = await measureColdStart({
        modelDir: tiny.dir,
        workers: 1,
        runs: 1,
        bin: runtime.bin,
        node: wrapper,
        requests: 2,
        timeoutMs: 30_000,
      });
      assert.ok(existsSync(mark), 'the server was spawned by the given Node');
      assert.equal(r.readyMs.length, 1);
      assert.ok(
        r.readyMs[0] > 0 && r.firstReplyMs[0] >= r.readyMs[0],
        `ready ${r.readyMs[0]} ms, first reply ${r.firstReplyMs[0]} ms`,
      );
    } finally {
      runtime.remove();
    }
    assert.equal(existsSync(join(runtime.bin, '..', '..')), false, 'the copy is removed');
  });
});
