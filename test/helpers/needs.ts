// What a test does when something it needs beyond `npm ci` is missing: outside CI it is skipped with the
// reason printed; under CI=true (.ci/run and the pipeline's test job install it) it runs and fails on it.
import assert from 'node:assert/strict';

/** CI=true, as CI runs .ci/run and GitHub Actions its jobs; unset, empty or "false": a developer's machine. */
export const underCi = (process.env.CI ?? '') !== '' && process.env.CI !== 'false';

/**
 * For node:test's `skip` option: the reason when `missing` is one and this is not CI, else false. Pair it
 * with `failIfMissing` in the suite's `before`, so that under CI the run stops on the reason.
 */
export function skipOutsideCi(missing: string | null): string | false {
  return missing !== null && !underCi ? missing : false;
}

export function failIfMissing(missing: string | null): void {
  assert.equal(missing, null, `${missing}: under CI=true, where it is installed, that is an error`);
}
