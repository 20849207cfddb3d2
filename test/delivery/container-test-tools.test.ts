// `npm run test:container` without buildah or mmdebstrap: its first line is the command that installs the
// missing ones, and it exits non-zero before building anything.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { repoRoot } from '../helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-container-tools-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const sudo = process.getuid?.() === 0 ? '' : 'sudo ';

/** Runs the container test with only the named stand-in tools on PATH; returns its output and status. */
function runWith(tools: string[]): { lines: string[]; stderr: string; status: number | null } {
  const bin = mkdtempSync(join(tmp, 'bin-'));
  for (const tool of tools) {
    writeFileSync(join(bin, tool), '#!/bin/sh\necho "stand-in must not run" >&2\nexit 99\n');
    chmodSync(join(bin, tool), 0o755);
  }
  const run = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'scripts', 'container', 'test-container.ts')],
    { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, PATH: bin }, timeout: 60_000 },
  );
  return { lines: run.stdout.split('\n'), stderr: run.stderr, status: run.status };
}

describe('the container test names the install command for missing tools', () => {
  it('both missing: the first line installs both', () => {
    const { lines, stderr, status } = runWith([]);
    console.log(`first line: ${lines[0]}\nthen: ${stderr.trim()}`);
    assert.equal(lines[0], `${sudo}apt-get install -y buildah mmdebstrap`);
    assert.match(stderr, /buildah and mmdebstrap are not installed: the line above installs them/);
    assert.equal(status, 1);
  });

  it('one missing: the first line installs that one', () => {
    const { lines, stderr, status } = runWith(['buildah']);
    assert.equal(lines[0], `${sudo}apt-get install -y mmdebstrap`);
    assert.doesNotMatch(stderr, /stand-in must not run/);
    assert.equal(status, 1);
  });
});
