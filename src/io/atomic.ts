// Atomic writes: a file or a whole directory appears complete or not at all (temp + fsync + rename).
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';

function tempName(target: string, tag: string): string {
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}.${tag}-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
}

async function fsyncPath(p: string): Promise<void> {
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsync of a directory makes a rename inside it durable; some platforms refuse it, which is harmless here. */
async function fsyncDir(dir: string): Promise<void> {
  try {
    await fsyncPath(dir);
  } catch {
    // Windows and some network file systems cannot open or sync a directory.
  }
}

/** Writes `data` to a temp file in the same directory, fsyncs it and renames it over `file`. */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempName(file, 'tmp');
  try {
    const handle = await open(tmp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

/** fsyncs every file below `dir`, then the directories themselves (deepest first). */
async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await fsyncTree(p);
    else if (entry.isFile()) await fsyncPath(p);
  }
  await fsyncDir(dir);
}

/**
 * Repairs what an interrupted writeDirAtomic left next to `dir`: if the process died between moving the old
 * directory aside and moving the new one in, the old one is put back; abandoned temp dirs are removed.
 * Returns true when a directory was restored.
 */
export async function recoverInterruptedDirWrite(dir: string): Promise<boolean> {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  const prefix = `.${path.basename(target)}.`;
  const entries = await readdir(parent, { withFileTypes: true }).catch(() => []);
  const siblings = entries.filter((e) => e.isDirectory() && e.name.startsWith(prefix));
  const tmps = siblings.filter((e) => e.name.slice(prefix.length).startsWith('tmp-'));
  const olds = siblings.filter((e) => e.name.slice(prefix.length).startsWith('old-'));
  // Only directories of processes that are gone are touched: a live writer keeps its own.
  const abandoned = (name: string) => {
    const pid = Number(name.slice(prefix.length).split('-')[1]);
    if (!Number.isInteger(pid) || pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  };
  let restored = false;
  const targetExists = await stat(target).then(
    () => true,
    () => false,
  );
  for (const e of olds) {
    if (!abandoned(e.name)) continue;
    const p = path.join(parent, e.name);
    if (!targetExists && !restored) {
      await rename(p, target);
      restored = true;
    } else {
      await rm(p, { recursive: true, force: true });
    }
  }
  for (const e of tmps)
    if (abandoned(e.name)) await rm(path.join(parent, e.name), { recursive: true, force: true });
  if (restored) await fsyncDir(parent);
  return restored;
}

/**
 * Builds a directory with `fill(tmpDir)` in a sibling temp dir, fsyncs it, then swaps it into place:
 * the old directory is renamed aside, the new one renamed in, the old one removed. If `fill` or the swap
 * fails, the previous directory is left as it was and the temp dir is removed.
 */
export async function writeDirAtomic(dir: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true });
  await recoverInterruptedDirWrite(target);
  const existing = await stat(target).catch(() => null);
  if (existing && !existing.isDirectory()) throw new Error(`${target}: exists and is not a directory`);

  const tmp = tempName(target, 'tmp');
  await mkdir(tmp);
  try {
    await fill(tmp);
    await fsyncTree(tmp);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }

  if (!existing) {
    try {
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    await fsyncDir(parent);
    return;
  }
  const old = tempName(target, 'old');
  try {
    await rename(target, old);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  try {
    await rename(tmp, target);
  } catch (err) {
    // Put the previous directory back before reporting the failure.
    await rename(old, target).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  await fsyncDir(parent);
  await rm(old, { recursive: true, force: true });
}
