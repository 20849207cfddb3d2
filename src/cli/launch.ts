// The built CLI's entry (bin/tiny-llm.js imports it): runs the CLI's bundle, dist/cli/cli.cjs, through V8's code cache.
import { type CachedScript, runCachedCommonJs } from '../server/startup/code-cache.js';

/** What the bundle exports (src/cli/bundle.ts). */
export interface CliBundle {
  start(codeCache: string): void;
  warmUp(): Promise<void>;
}

/** Loads the bundle beside this file; `bundle.cache` says whether V8 took its code cache, `bundle.save` writes it. */
export function loadCli(): { cli: CliBundle; bundle: CachedScript } {
  const bundle = runCachedCommonJs(new URL('./cli.cjs', import.meta.url));
  return { cli: bundle.exports as unknown as CliBundle, bundle };
}
