// The short load run (16 clients × 8 s against the built `tiny-llm serve` on loopback, as the image runs it): only
// designed answers, /health keeps answering fast while every worker is busy, and the server's memory stays bounded.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { formatReport, runLoad } from '../../scripts/load/load.js';
import { assertBuildCurrent } from '../helpers/built-server.js';
import { createTinyModel, type TinyModel } from '../helpers/tiny-model.js';

let tiny: TinyModel;
before(async () => {
  tiny = await createTinyModel({ nPositions: 256 });
});
after(() => tiny.remove());

/**
 * The target is a /health p99 under 50 ms; `npm run load` reports against that figure. This guard is
 * looser because here the test runner, the load clients, the server's event loop and its two generation
 * workers all share a 2-core machine, so a probe can wait for a CPU even when the event loop is free. A
 * generation on the event loop would still break it: it would hold every probe for a whole generation
 * (hundreds of milliseconds under this load), not only the slowest 1 %.
 */
const HEALTH_P99_GUARD_MS = 250;
/**
 * Generous bounds: run from source (tsx loaded in every thread) the server holds more than the built one, and
 * the 64-client minute of `npm run load` plateaus at the same level. A leak per request would pass either bound.
 */
const RSS_GUARD_MIB = 448;
const RSS_GROWTH_GUARD_MIB = 192;

describe('load', () => {
  it('16 clients for 8 s: no unexpected answer, /health p99 under the guard, resident memory bounded', async () => {
    assertBuildCurrent();
    const report = await runLoad({
      compiled: true,
      modelDir: tiny.dir,
      clients: 16,
      durationS: 8,
      workers: 2,
      maxTokens: 32,
    });
    console.log(formatReport(report));
    assert.deepEqual(report.unexpectedSamples, [], 'unexpected errors');
    assert.equal(report.unexpected, 0);
    for (const status of Object.keys(report.byStatus))
      assert.ok(['200', '429', '503'].includes(status), `status ${status} is not one the contract allows`);
    for (const route of ['generate', 'chat', 'chat-stream'] as const)
      assert.ok(report.latencyMs[route].n > 0, `no ${route} request succeeded`);
    assert.equal(report.healthFailures, 0, 'a /health probe failed');
    assert.ok(report.healthMs.n >= 50, `only ${report.healthMs.n} /health probes in 8 s`);
    assert.ok(
      report.healthMs.p99 < HEALTH_P99_GUARD_MS,
      `/health p99 ${report.healthMs.p99.toFixed(1)} ms (guard ${HEALTH_P99_GUARD_MS} ms)`,
    );
    assert.ok(report.rssMaxMiB < RSS_GUARD_MIB, `server RSS reached ${report.rssMaxMiB.toFixed(1)} MiB`);
    const growth = report.rssMaxMiB - report.rssStartMiB;
    assert.ok(growth < RSS_GROWTH_GUARD_MIB, `server RSS grew by ${growth.toFixed(1)} MiB under load`);
  });
});
