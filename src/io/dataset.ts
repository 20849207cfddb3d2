// Reads training/eval text files and whole model directories (for the model cache), with errors naming the file.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

/** A UTF-8 text file's content; `what` names the file's role in error messages (e.g. "data file"). */
export async function readTextFile(file: string, what = 'file'): Promise<string> {
  const info = await stat(file).catch(() => null);
  if (!info) throw new Error(`${what} ${file}: does not exist`);
  if (!info.isFile()) throw new Error(`${what} ${file}: is not a regular file`);
  const bytes = await readFile(file);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${what} ${file}: is not valid UTF-8 text`);
  }
}

/** Like readTextFile, but null when the file does not exist. */
export async function readOptionalTextFile(file: string, what = 'file'): Promise<string | null> {
  const info = await stat(file).catch(() => null);
  return info ? readTextFile(file, what) : null;
}

/** True when the path exists. */
export async function pathExists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null)) !== null;
}

/** Every regular file directly inside dir (name → bytes), sorted by name; sub-directories are not followed. */
export async function readDirFiles(dir: string): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of entries) {
    if (entry.isFile()) out[entry.name] = new Uint8Array(await readFile(path.join(dir, entry.name)));
  }
  return out;
}
