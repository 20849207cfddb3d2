// Proves the browser tests' choice of Chromium (CHROMIUM_PATH, then Debian's, then the npm one), that the npm
// one unpacks whole or not at all, and that it launches and renders text with nothing but what npm installed.
import assert from 'node:assert/strict';
import {
  chmodSync,
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
import { buffer } from 'node:stream/consumers';
import { after, describe, it } from 'node:test';
import { brotliCompressSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { chooseChromium, launchChromium, unpackNpmChromium } from '../helpers/browser.js';
import { failIfMissing, skipOutsideCi } from '../helpers/needs.js';

const tmp = mkdtempSync(join(tmpdir(), 'tiny-llm-browser-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A tar archive of the entries given (type 'file' unless said), written by tar-stream. */
async function tarOf(
  entries: { name: string; type?: 'file' | 'directory'; data?: string }[],
): Promise<Buffer> {
  const archive = pack();
  for (const { name, type = 'file', data = '' } of entries) archive.entry({ name, type }, data);
  archive.finalize();
  return buffer(archive);
}

function executable(path: string): string {
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, 0o755);
  return path;
}

describe('which Chromium', () => {
  const debian = executable(join(tmp, 'debian-chromium'));
  const other = executable(join(tmp, 'other-chromium'));

  it('CHROMIUM_PATH first, then Debian’s; a CHROMIUM_PATH that is no executable file is an error', async () => {
    const picked = await chooseChromium({ chromiumPath: other, debianPath: debian });
    assert.ok('executablePath' in picked && picked.executablePath === other, JSON.stringify(picked));
    const debians = await chooseChromium({ chromiumPath: '', debianPath: debian });
    assert.ok('executablePath' in debians && debians.executablePath === debian, JSON.stringify(debians));
    const plain = join(tmp, 'not-executable');
    writeFileSync(plain, '');
    for (const bad of [plain, join(tmp, 'absent'), tmp]) {
      await assert.rejects(chooseChromium({ chromiumPath: bad, debianPath: debian }), {
        message: `CHROMIUM_PATH=${bad} is not an executable file`,
      });
    }
  });

  it('where the npm Chromium cannot run and there is no other, says why and how to pick one', async () => {
    const none = await chooseChromium({
      chromiumPath: '',
      debianPath: join(tmp, 'absent'),
      platform: 'darwin',
      arch: 'arm64',
    });
    assert.ok('missing' in none);
    assert.match(none.missing, /runs on linux-x64 only \(this is darwin-arm64\); set CHROMIUM_PATH/);
  });
});

describe('unpacking the npm Chromium', () => {
  /** A bin/ folder like the package's, with small stand-ins; `omit` leaves one file out. */
  async function bin(name: string, omit?: string): Promise<string> {
    const dir = join(tmp, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const files: Record<string, Buffer> = {
      'chromium.br': brotliCompressSync(Buffer.from('#!/bin/sh\necho stand-in\n')),
      'al2023.tar.br': brotliCompressSync(await tarOf([{ name: 'lib/libnss3.so', data: 'nss' }])),
      'fonts.tar.br': brotliCompressSync(
        await tarOf([
          { name: 'fonts.conf', data: '<fontconfig><dir>/tmp/fonts</dir></fontconfig>' },
          { name: 'fonts/', type: 'directory' },
          { name: 'fonts/Open_Sans/OpenSans-Regular.ttf', data: 'font' },
        ]),
      ),
    };
    for (const [file, bytes] of Object.entries(files)) {
      if (file === omit) continue;
      writeFileSync(join(dir, file), bytes);
    }
    return dir;
  }

  it('two unpacks at once both return the one complete folder and leave no partial one behind', async () => {
    const target = join(tmp, 'cache-a', 'chromium-x');
    const [a, b] = await Promise.all([
      unpackNpmChromium(await bin('bin-a'), target),
      unpackNpmChromium(await bin('bin-a'), target),
    ]);
    assert.equal(a, target);
    assert.equal(b, target);
    assert.equal(readFileSync(join(target, 'chromium'), 'utf8'), '#!/bin/sh\necho stand-in\n');
    assert.equal(readFileSync(join(target, 'lib', 'libnss3.so'), 'utf8'), 'nss');
    assert.equal(readFileSync(join(target, 'fonts', 'Open_Sans', 'OpenSans-Regular.ttf'), 'utf8'), 'font');
    assert.match(
      readFileSync(join(target, 'fonts.conf'), 'utf8'),
      new RegExp(`<dir>${join(target, 'fonts')}</dir>`),
      'fonts.conf names the fonts unpacked here',
    );
    assert.deepEqual(readdirSync(join(tmp, 'cache-a')), ['chromium-x']);
  });

  it('a failed unpack leaves nothing that a later run would take for complete', async () => {
    const target = join(tmp, 'cache-b', 'chromium-x');
    await assert.rejects(unpackNpmChromium(await bin('bin-b', 'fonts.tar.br'), target), /fonts\.tar\.br/);
    assert.equal(existsSync(target), false);
    assert.deepEqual(readdirSync(join(tmp, 'cache-b')), []);
  });
});

// The package's binary is for x86-64 Linux; CI is, and must launch it.
const npmRuns = process.platform === 'linux' && process.arch === 'x64';
const npmMissing = npmRuns
  ? null
  : `the npm Chromium runs on linux-x64 only (this is ${process.platform}-${process.arch})`;

describe('the npm Chromium, without Debian’s', { skip: skipOutsideCi(npmMissing) }, () => {
  it('unpacks from node_modules, launches, and renders text in its own fonts', {
    timeout: 120_000,
  }, async () => {
    failIfMissing(npmMissing);
    const choice = await chooseChromium({
      chromiumPath: '',
      debianPath: join(tmp, 'absent'),
      cacheDir: join(tmp, 'cache-npm'),
    });
    assert.ok('executablePath' in choice, JSON.stringify(choice));
    assert.match(choice.source, /^@sparticuz\/chromium \d+\.\d+\.\d+ /);
    const browser = await launchChromium(choice);
    try {
      console.log(`browser: ${choice.source}, version ${browser.version()}`);
      const page = await browser.newPage();
      await page.setContent('<p id="p">streamed</p><canvas id="c" width="200" height="60"></canvas>');
      // Glyphs drawn need a font: count the pixels the text inked.
      const inked = await page.evaluate(() => {
        const canvas = document.getElementById('c') as HTMLCanvasElement;
        const ctx = canvas.getContext('2d')!;
        ctx.font = '32px sans-serif';
        ctx.fillText('Hello', 4, 44);
        const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
      });
      console.log(`text inked ${inked} pixels`);
      assert.equal(await page.textContent('#p'), 'streamed');
      assert.ok(inked > 100, `the text inked ${inked} pixels: no font?`);
    } finally {
      await browser.close();
    }
  });
});
