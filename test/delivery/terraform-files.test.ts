// Checks the Terraform files as files: `terraform fmt` finds nothing to change (run wherever the terraform binary
// is installed, as in the pipeline's test job), and both root modules commit the same provider lock file, which
// pins a release their constraint admits, with the registry's package hashes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadHclFile, loadModule, obj, repoRoot } from './hcl-model.js';

const modules = ['terraform', 'terraform/bootstrap'];
const hasTerraform = spawnSync('terraform', ['version'], { encoding: 'utf8' }).status === 0;

function fmtCheck(cwd: string, target: string): { status: number | null; diff: string } {
  const r = spawnSync('terraform', ['fmt', '-check', '-recursive', '-diff', target], {
    cwd,
    encoding: 'utf8',
  });
  return { status: r.status, diff: r.stdout };
}

describe('terraform fmt', () => {
  test('terraform fmt -check -recursive finds nothing to change', {
    skip: !hasTerraform && 'no terraform binary',
  }, () => {
    const { status, diff } = fmtCheck(repoRoot, 'terraform');
    assert.equal(status, 0, `terraform fmt would change these files:\n${diff}`);
  });

  test('the check is not vacuous: a misaligned file fails it', {
    skip: !hasTerraform && 'no terraform binary',
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'tf-fmt-'));
    try {
      writeFileSync(join(dir, 'bad.tf'), 'locals {\n  a = 1\n  longer_name = 2\n}\n');
      const { status, diff } = fmtCheck(dir, '.');
      assert.notEqual(status, 0);
      assert.match(diff, /bad\.tf/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('provider lock files', () => {
  test('both root modules commit the same .terraform.lock.hcl', () => {
    const [first, ...rest] = modules.map((m) => join(repoRoot, m, '.terraform.lock.hcl'));
    for (const file of [first, ...rest]) assert.ok(file && existsSync(file), `${file} is committed`);
    for (const file of rest)
      assert.equal(readFileSync(file ?? '', 'utf8'), readFileSync(first ?? '', 'utf8'));
  });

  for (const dir of modules) {
    test(`${dir}: the lock pins a google release its constraint admits, with the registry's hashes`, async () => {
      const lock = await loadHclFile(join(repoRoot, dir, '.terraform.lock.hcl'));
      const providers = obj(lock.provider);
      assert.deepEqual(
        Object.keys(providers),
        ['registry.terraform.io/hashicorp/google'],
        'only the google provider',
      );
      const google = obj(providers['registry.terraform.io/hashicorp/google']);
      const { doc } = await loadModule(join(repoRoot, dir));
      const constraint = String(obj(obj(obj(doc.terraform).required_providers).google).version);
      assert.equal(google.constraints, constraint, 'the lock records the module constraint');
      // "~> 6.M" admits 6.M and every later 6.x.
      const [major, minor] = String(google.version).split('.').map(Number);
      const floor = Number(/^~> 6\.(\d+)$/.exec(constraint)?.[1]);
      assert.ok(major === 6 && (minor ?? -1) >= floor, `${String(google.version)} satisfies ${constraint}`);
      const hashes = (google.hashes as string[]) ?? [];
      const zh = hashes.filter((h) => /^zh:[0-9a-f]{64}$/.test(h));
      const h1 = hashes.filter((h) => /^h1:[A-Za-z0-9+/]{43}=$/.test(h));
      assert.equal(zh.length + h1.length, hashes.length, 'every entry is a zh: or h1: hash');
      // One zh: per published zip (each OS/architecture) and the registry manifest: any platform can verify.
      assert.ok(zh.length >= 12, `${zh.length} zh: hashes`);
      assert.ok(h1.length >= 1, `${h1.length} h1: hashes`);
      console.log(`# ${dir}: google ${String(google.version)}, ${zh.length} zh + ${h1.length} h1 hashes`);
    });
  }
});
