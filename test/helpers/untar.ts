// Unpacks a plain tar archive (regular files and folders only) held in memory, checking every header first.
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';

const BLOCK = 512;

function field(header: Buffer, offset: number, length: number): string {
  const raw = header.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
}

function octal(header: Buffer, offset: number, length: number, what: string, archive: string): number {
  const text = field(header, offset, length).trim();
  if (!/^[0-7]*$/.test(text))
    throw new Error(`${archive}: the ${what} field "${text}" is not an octal number`);
  return text === '' ? 0 : Number.parseInt(text, 8);
}

/**
 * Writes the archive's files under `dest` and returns their paths relative to it. Anything else (links, long
 * names, extended headers), a name that leaves `dest`, a bad checksum or a truncated entry is an error naming
 * the archive: an unusual archive fails loudly instead of unpacking halfway right.
 */
export function untar(archive: string, bytes: Buffer, dest: string): string[] {
  const root = resolve(dest);
  const written: string[] = [];
  let offset = 0;
  while (offset + BLOCK <= bytes.length) {
    const header = bytes.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) return written;
    // The checksum is the byte sum of the header with its own 8-byte field read as spaces.
    let sum = 8 * 0x20;
    for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += header[i];
    const stored = octal(header, 148, 8, 'checksum', archive);
    if (stored !== sum)
      throw new Error(`${archive}: header at byte ${offset} has checksum ${stored}, not ${sum}`);
    // POSIX ustar puts a name prefix at 345; the GNU format uses those bytes for other fields.
    const ustar = header.subarray(257, 263).toString('latin1') === 'ustar\0';
    const prefix = ustar ? field(header, 345, 155) : '';
    const name = prefix === '' ? field(header, 0, 100) : `${prefix}/${field(header, 0, 100)}`;
    const size = octal(header, 124, 12, 'size', archive);
    const mode = octal(header, 100, 8, 'mode', archive) & 0o777;
    const type = header[156] === 0 ? '0' : String.fromCharCode(header[156]);
    const start = offset + BLOCK;
    if (start + size > bytes.length)
      throw new Error(`${archive}: ${name} is cut short (${size} bytes declared)`);
    const target = resolve(root, name);
    if (name === '' || !target.startsWith(root + sep)) {
      throw new Error(`${archive}: entry "${name}" would be written outside ${root}`);
    }
    if (type === '5') {
      mkdirSync(target, { recursive: true });
    } else if (type === '0') {
      mkdirSync(resolve(target, '..'), { recursive: true });
      writeFileSync(target, bytes.subarray(start, start + size), { mode });
      written.push(name);
    } else {
      throw new Error(
        `${archive}: entry "${name}" has tar type '${type}', which this reader does not unpack`,
      );
    }
    offset = start + Math.ceil(size / BLOCK) * BLOCK;
  }
  throw new Error(`${archive}: no end-of-archive marker after byte ${offset}`);
}
