// Scans every file git would commit for real-looking Google Cloud project ids, bucket names, service account
// emails and keys: the template must stay free of anything tied to one project or one person.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { failIfMissing, skipOutsideCi } from '../helpers/needs.js';

const root = join(import.meta.dirname, '../..');

// Names that are obviously placeholders or interpolations, not someone's real project or bucket.
function isPlaceholder(name: string): boolean {
  return (
    /[$<{}]/.test(name) ||
    /^[A-Z0-9_.-]+$/.test(name) ||
    /(^|-)(my|your|example|sample|test|fake|dummy|placeholder|demo-project)(-|$)/.test(name) ||
    name.length < 6
  );
}

type Finding = { file: string; line: number; what: string; text: string };

const detectors: { what: string; pattern: RegExp; name?: (m: RegExpExecArray) => string }[] = [
  { what: 'private key', pattern: /-----BEGIN (?:RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----/ },
  { what: 'service account key file', pattern: /"type"\s*:\s*"service_account"/ },
  { what: 'Google API key', pattern: /AIza[0-9A-Za-z_-]{35}/ },
  { what: 'Google OAuth access token', pattern: /ya29\.[0-9A-Za-z_-]{20,}/ },
  { what: 'GitHub token', pattern: /gh[pousr]_[A-Za-z0-9]{36}/ },
  {
    what: 'project id',
    pattern: /projects\/([a-z][a-z0-9-]{4,28}[a-z0-9])\b/,
    name: (m) => m[1] ?? '',
  },
  {
    what: 'project id',
    pattern: /(?:--project[= ]|project(?:_id)?\s*[:=]\s*["'])([a-z][a-z0-9-]{4,28}[a-z0-9])\b/,
    name: (m) => m[1] ?? '',
  },
  {
    what: 'service account email',
    pattern: /[a-z][a-z0-9-]{4,28}@([a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com/,
    name: (m) => m[1] ?? '',
  },
  {
    what: 'Artifact Registry path',
    pattern: /[a-z0-9-]+-docker\.pkg\.dev\/([a-z][a-z0-9-]{4,28}[a-z0-9])\//,
    name: (m) => m[1] ?? '',
  },
  { what: 'bucket', pattern: /gs:\/\/([a-z0-9][a-z0-9_.-]{1,61}[a-z0-9])/, name: (m) => m[1] ?? '' },
];

export function findSecrets(file: string, content: string): Finding[] {
  const findings: Finding[] = [];
  for (const [i, line] of content.split('\n').entries()) {
    for (const d of detectors) {
      const m = d.pattern.exec(line);
      if (!m) continue;
      if (d.name && isPlaceholder(d.name(m))) continue;
      findings.push({ file, line: i + 1, what: d.what, text: line.trim().slice(0, 120) });
    }
  }
  return findings;
}

/** The files git would commit, or why git cannot list them (no git, or a copy of the sources without .git). */
function trackedFiles(): string[] | { missing: string } {
  try {
    const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return out.split('\0').filter((f) => f !== '');
  } catch (error) {
    const why = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    return { missing: `git cannot list this checkout's files (${why.split('\n')[0]})` };
  }
}

describe('no real project ids, buckets or keys in the repository', () => {
  const files = trackedFiles();
  const missing = 'missing' in files ? files.missing : null;

  test('git’s files contain none', { skip: skipOutsideCi(missing) }, () => {
    failIfMissing(missing);
    const findings: Finding[] = [];
    let scanned = 0;
    for (const file of files as string[]) {
      const path = join(root, file);
      let size: number;
      try {
        const stat = statSync(path);
        if (!stat.isFile()) continue; // e.g. an untracked symlink to a folder
        size = stat.size;
      } catch {
        continue; // deleted in the working tree
      }
      if (size > 5_000_000) continue;
      const buf = readFileSync(path);
      if (buf.subarray(0, 8000).includes(0)) continue; // binary
      findings.push(...findSecrets(file, buf.toString('utf8')));
      scanned++;
    }
    console.log(`# scanned ${scanned} files, ${findings.length} findings`);
    assert.deepEqual(findings, []);
  });

  test('the detectors catch real-looking values and let placeholders through', () => {
    // Built from parts so this file itself never contains a match.
    const key = ['-----BEGIN', 'PRIVATE KEY-----'].join(' ');
    const samples = [
      key,
      `{"type": "service_${'account'}"}`,
      `AIza${'A'.repeat(35)}`,
      `state in gs://${'acme-prod'}-tfstate/envs`,
      `--project=${'acme'}-prod-4821`,
      `europe-west1-docker.pkg.dev/${'acme'}-prod-4821/tiny-llm/app`,
      `deployer@${'acme'}-prod-4821.iam.gserviceaccount.com`,
      `projects/${'acme'}-prod-4821/locations`,
    ];
    for (const s of samples) assert.equal(findSecrets('sample', s).length, 1, `caught: ${s}`);
    const placeholders = [
      `gs://$${'{STATE_BUCKET}'}/tiny-llm/envs`,
      'REGION-docker.pkg.dev/PROJECT/REPO/NAME@sha256:...',
      'projects/my-project/traces',
      '--project=<project-id>',
    ];
    for (const s of placeholders) assert.deepEqual(findSecrets('sample', s), [], `placeholder: ${s}`);
  });
});
