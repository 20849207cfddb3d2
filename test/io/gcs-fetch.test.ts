// fetchGcsPrefix (what a runtime fetch of gs://BUCKET/PREFIX builds on): only the prefix's own objects, each
// checked against its listed CRC32C/MD5 and size, read at the listed generation, and the destination written
// whole or not at all.
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fetchGcsPrefix, parseGcsUri } from '../../src/io/gcs-fetch.js';
import { startFakeGcs } from '../helpers/fake-gcs.js';

let gcs: Awaited<ReturnType<typeof startFakeGcs>>;
let work: string;
const saved = process.env.STORAGE_EMULATOR_HOST;
before(async () => {
  gcs = await startFakeGcs();
  process.env.STORAGE_EMULATOR_HOST = gcs.url;
  work = mkdtempSync(join(tmpdir(), 'tiny-llm-gcs-'));
});
after(async () => {
  if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
  else process.env.STORAGE_EMULATOR_HOST = saved;
  await gcs.close();
  rmSync(work, { recursive: true, force: true });
});

// Long enough for a loaded machine; only the stall case waits for it.
const options = { log: () => {}, stallTimeoutMs: 5000 };

function put(prefix: string, files: Record<string, string | Buffer>): void {
  for (const [name, data] of Object.entries(files))
    gcs.objects.set(`b-test/${prefix}${name}`, Buffer.from(data));
}

describe('fetchGcsPrefix', () => {
  it('fetches the objects directly under the prefix, verified, and reports size, hashes and generation', async () => {
    const big = Buffer.alloc(300_000, 7);
    put('m/', { 'config.json': '{}', 'model.safetensors': big, 'sub/x.bin': 'no', '.hidden': 'no' });
    put('m2/', { 'config.json': 'another prefix' });
    const dir = join(work, 'ok');
    const got = await fetchGcsPrefix('gs://b-test/m', dir, options);
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'model.safetensors']);
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), big);
    assert.equal(got['model.safetensors'].size, 300_000);
    assert.ok(got['model.safetensors'].crc32c && got['model.safetensors'].md5);
    assert.match(got['config.json'].generation ?? '', /^\d+$/);
  });

  it('a corrupted or stalled object leaves the destination as it was, with nothing beside it', async () => {
    put('c/', { 'a.json': '{"a":1}', 'weights.bin': Buffer.alloc(50_000, 3) });
    const dir = join(work, 'kept');
    mkdirSync(dir);
    writeFileSync(join(dir, 'previous.txt'), 'the model a server is using');
    gcs.faults.set('b-test/c/weights.bin', { corrupt: true });
    await assert.rejects(
      fetchGcsPrefix('gs://b-test/c', dir, options),
      /weights\.bin: CRC32C \S+ does not match/,
    );
    gcs.faults.set('b-test/c/weights.bin', { stallAfter: 10 });
    await assert.rejects(fetchGcsPrefix('gs://b-test/c', dir, options), /weights\.bin: download stalled/);
    gcs.faults.delete('b-test/c/weights.bin');
    assert.deepEqual(readdirSync(dir), ['previous.txt']);
    assert.deepEqual(
      readdirSync(work).filter((f) => f.startsWith('.kept.')),
      [],
    );
    await fetchGcsPrefix('gs://b-test/c', dir, options);
    assert.deepEqual(readdirSync(dir).sort(), ['a.json', 'weights.bin']);
  });

  it('an empty prefix, a missing bucket and bad URIs are refused with the reason', async () => {
    await assert.rejects(
      fetchGcsPrefix('gs://b-test/none', join(work, 'x'), options),
      /no objects under this prefix/,
    );
    await assert.rejects(
      fetchGcsPrefix('gs://b-test/../etc', join(work, 'x'), options),
      /may not hold "\." or "\.\." parts/,
    );
    assert.throws(() => parseGcsUri('gs://'), /not a gs:\/\/BUCKET/);
    assert.deepEqual(parseGcsUri('gs://example-bucket/x/y/'), { bucket: 'example-bucket', prefix: 'x/y' });
    assert.ok(!existsSync(join(work, 'x')));
  });
});
