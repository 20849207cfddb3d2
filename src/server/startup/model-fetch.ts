// A model fetched at start (`serve --model-uri gs://BUCKET/PREFIX`): downloaded, verified, into a private temporary directory that the process removes when it ends.
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fetchGcsPrefix } from '../../io/gcs-fetch.js';

/** Time without a byte before an object's download counts as stalled and the start fails. */
export const FETCH_STALL_MS = 60_000;

export interface ModelFetch {
  /** The local model directory, once every object is fetched and verified; rejects with one line naming the URI. */
  dir: Promise<string>;
  /** The temporary directory that holds it (removed at exit). */
  root: string;
  /**
   * Deletes the fetched weight files once the model is in memory. On Cloud Run the file system is memory: the
   * weights would otherwise be held twice. The small files (config, report, source) stay for /api/model.
   */
  dropWeights(): Promise<string[]>;
}

/**
 * Starts fetching `uri` into a new directory under the system's temporary directory ($TMPDIR, else /tmp),
 * removed when the process exits, whatever the reason. `log` gets one line per verified object.
 */
export function startModelFetch(
  uri: string,
  o: { log: (line: string) => void; stallTimeoutMs: number },
): ModelFetch {
  const root = mkdtempSync(path.join(tmpdir(), 'tiny-llm-model-'));
  const remove = () => rmSync(root, { recursive: true, force: true });
  process.once('exit', remove);
  const dir = path.join(root, 'model');
  const started = performance.now();
  const fetched = fetchGcsPrefix(uri, dir, { log: o.log, stallTimeoutMs: o.stallTimeoutMs }).then(
    (objects) => {
      const bytes = Object.values(objects).reduce((sum, f) => sum + f.size, 0);
      o.log(
        `fetched ${uri} into ${dir}: ${Object.keys(objects).length} files, ${bytes} bytes in ` +
          `${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
      return dir;
    },
    (err: unknown) => {
      remove();
      const message = err instanceof Error ? err.message : String(err);
      // The fetch's messages name the URI or the object.
      throw new Error(`cannot fetch the model: ${message}`);
    },
  );
  return {
    dir: fetched,
    root,
    async dropWeights() {
      const names = (await readdir(dir)).filter((f) => f.endsWith('.safetensors'));
      await Promise.all(names.map((f) => rm(path.join(dir, f), { force: true })));
      return names;
    },
  };
}
