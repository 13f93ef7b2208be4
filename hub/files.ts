import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Writes a file atomically with the given mode: a temporary file in the same folder, created with
 * that mode (so a secret is never readable by others, not even for a moment), flushed, then renamed
 * over the target. A reader sees the old file or the new one, never half of either.
 */
export function writeFileAtomic(file: string, data: string | Buffer, mode: number): void {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    chmodSync(tmp, mode); // the umask may have cleared bits of `mode`; make it exact
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** A file holding a secret: owner read/write only. */
export const SECRET_MODE = 0o600;
/** A public file (certificates). */
export const PUBLIC_MODE = 0o644;
