// Which Chromium the browser tests drive: CHROMIUM_PATH, else Debian's, else the one the dev dependency
// @sparticuz/chromium carries (unpacked once, with the libraries and fonts it ships, in node_modules/.cache).
import {
  accessSync,
  constants,
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress } from 'node:zlib';
import { type Browser, chromium } from 'playwright-core';
import { extract } from 'tar-fs';
import { repoRoot } from './fixtures.js';

export const DEBIAN_CHROMIUM = '/usr/bin/chromium';
const NPM_CHROMIUM = '@sparticuz/chromium';

/** Headless, no sandbox (tests may run as root), no GPU, and no traffic of the browser's own. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export interface ChromiumChoice {
  executablePath: string;
  /** Which one it is, for the test's log. */
  source: string;
  /** What the binary needs in its environment (the npm one: its own libraries and fonts). */
  env: Record<string, string>;
}

export interface ChooseOptions {
  /** Defaults to process.env.CHROMIUM_PATH; an empty string counts as unset. */
  chromiumPath?: string;
  debianPath?: string;
  /** Where the npm Chromium is unpacked; defaults to node_modules/.cache of this checkout. */
  cacheDir?: string;
  platform?: string;
  arch?: string;
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * The Chromium to drive, or `{ missing }` saying why there is none. A CHROMIUM_PATH that names no executable
 * file is an error, never passed over for another browser.
 */
export async function chooseChromium(
  options: ChooseOptions = {},
): Promise<ChromiumChoice | { missing: string }> {
  const chromiumPath = options.chromiumPath ?? process.env.CHROMIUM_PATH ?? '';
  if (chromiumPath !== '') {
    if (!isExecutableFile(chromiumPath)) {
      throw new Error(`CHROMIUM_PATH=${chromiumPath} is not an executable file`);
    }
    return { executablePath: chromiumPath, source: `CHROMIUM_PATH (${chromiumPath})`, env: {} };
  }
  const debianPath = options.debianPath ?? DEBIAN_CHROMIUM;
  if (isExecutableFile(debianPath)) {
    return { executablePath: debianPath, source: `Debian's chromium (${debianPath})`, env: {} };
  }
  // The package's binary and libraries are built for x86-64 Linux only.
  const platform = options.platform ?? process.platform;
  const arch = options.arch ?? process.arch;
  if (platform !== 'linux' || arch !== 'x64') {
    return {
      missing: `no Chromium: ${debianPath} is absent and ${NPM_CHROMIUM} runs on linux-x64 only (this is ${platform}-${arch}); set CHROMIUM_PATH to a Chrome or Chromium`,
    };
  }
  let packageDir: string;
  try {
    packageDir = join(dirname(createRequire(import.meta.url).resolve(NPM_CHROMIUM)), '..');
  } catch {
    return {
      missing: `no Chromium: ${debianPath} is absent and the dev dependency ${NPM_CHROMIUM} is not installed (npm ci)`,
    };
  }
  const { version } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as {
    version: string;
  };
  const cacheDir = options.cacheDir ?? join(repoRoot, 'node_modules', '.cache');
  const dir = await unpackNpmChromium(
    join(packageDir, 'bin'),
    join(cacheDir, `sparticuz-chromium-${version}`),
  );
  return {
    executablePath: join(dir, 'chromium'),
    source: `${NPM_CHROMIUM} ${version} (${dir})`,
    env: { LD_LIBRARY_PATH: join(dir, 'lib'), FONTCONFIG_FILE: join(dir, 'fonts.conf') },
  };
}

/**
 * Unpacks the package's brotli-compressed Chromium, the NSS/NSPR/expat libraries it links (which a bare
 * Debian lacks) and its fonts into `dir`, unless already there. It is built beside `dir` and renamed into
 * place whole, so a present `dir` is complete, and two unpacks at once (test files run in parallel) both end well.
 */
export async function unpackNpmChromium(binDir: string, dir: string): Promise<string> {
  if (existsSync(join(dir, 'chromium'))) return dir;
  mkdirSync(dirname(dir), { recursive: true });
  const partial = mkdtempSync(`${dir}.tmp-`);
  try {
    await pipeline(
      createReadStream(join(binDir, 'chromium.br')),
      createBrotliDecompress(),
      createWriteStream(join(partial, 'chromium'), { mode: 0o755 }),
    );
    for (const archive of ['al2023.tar.br', 'fonts.tar.br']) {
      await pipeline(
        createReadStream(join(binDir, archive)),
        createBrotliDecompress(),
        extract(partial),
      ).catch((error: Error) => {
        throw new Error(`${archive}: cannot unpack (${error.message})`);
      });
    }
    // The package's own fonts.conf names serverless paths; this one names the fonts unpacked here.
    writeFileSync(
      join(partial, 'fonts.conf'),
      `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n  <dir>${join(dir, 'fonts')}</dir>\n  <cachedir>${join(dir, 'fonts-cache')}</cachedir>\n</fontconfig>\n`,
    );
    renameSync(partial, dir);
  } catch (error) {
    rmSync(partial, { recursive: true, force: true });
    // Another process renamed its copy into place first.
    if (existsSync(join(dir, 'chromium'))) return dir;
    throw error;
  }
  return dir;
}

/** Launches a chosen Chromium with the flags above; a failed launch names the binary it tried. */
export async function launchChromium(choice: ChromiumChoice): Promise<Browser> {
  try {
    return await chromium.launch({
      executablePath: choice.executablePath,
      args: CHROMIUM_FLAGS,
      env: { ...process.env, ...choice.env },
    });
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(`could not launch ${choice.source} (set CHROMIUM_PATH to pick another): ${why}`);
  }
}
