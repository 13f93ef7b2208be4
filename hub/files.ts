import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, fchownSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type * as z from '../protocol/zod.js';
import { ConfigError, describeIssues } from '../protocol/index.js';
import { ownerForNewFile, type Owner } from './file-owner.js';

/**
 * Writes a file atomically and durably with the given mode: a temporary file in the same folder,
 * created with that mode (so a secret is never readable by others, not even for a moment), written
 * and fsync'ed, renamed over the target, then the folder fsync'ed so the rename itself survives a
 * power cut. A reader, or a process killed at any moment (kill -9), leaves the old file or the new
 * one, never half of either; at worst a stray `.NAME.*.tmp` next to it.
 *
 * Run as root (an admin who left out `runuser -u devstreams`), the new file and any folder made for
 * it get the owner of the file replaced or of the folder (hub/file-owner.ts), before the rename:
 * the hub, running as its own user, can read it from the moment it appears.
 */
export function writeFileAtomic(file: string, data: string | Buffer, mode: number): void {
  const dir = dirname(file);
  const owner = ownerForNewFile(file);
  makeDirDurable(dir, owner);
  const tmp = join(dir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    if (owner) fchownSync(fd, owner.uid, owner.gid);
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
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
  fsyncDir(dir);
}

/**
 * Creates `dir` and its missing parents (owned by `owner` when given), one by one, so that the new
 * entries survive a power cut (each folder's entry lives in its parent: the parent is fsync'ed).
 * Not mkdirSync's recursive mode: under a folder such as /proc, where mkdir answers ENOENT, Node's
 * recursive mkdir retries forever at full CPU. A path through a file, or a folder that cannot be
 * made, is a ConfigError naming it.
 */
export function makeDirDurable(dir: string, owner: Owner | null): void {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    let isDir: boolean;
    try {
      isDir = statSync(d).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOENT' || code === 'ENOTDIR') && dirname(d) !== d) {
        missing.unshift(d);
        continue;
      }
      throw new ConfigError(d, [`cannot use this folder (${code ?? 'error'})`]);
    }
    if (!isDir) throw new ConfigError(d, ['is a file, not a folder']);
    break;
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' || !statSync(d).isDirectory()) throw new ConfigError(d, [`cannot make this folder (${code ?? 'error'})`]);
    }
    if (owner) chownSync(d, owner.uid, owner.gid);
    fsyncDir(dirname(d));
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A file holding a secret: owner read/write only. */
export const SECRET_MODE = 0o600;
/** A public file (certificates). */
export const PUBLIC_MODE = 0o644;

/**
 * Reads one of the hub's JSON state files (registry, service tokens): size bound, JSON, schema.
 * A missing file is `empty()`. Throws a ConfigError naming the file and `what` is wrong.
 */
export function readJsonStateFile<S extends z.ZodMiniType>(
  file: string,
  schema: S,
  opts: { what: string; maxBytes: number; empty: () => z.output<S> },
): z.output<S> {
  let text: string;
  try {
    if (statSync(file).size > opts.maxBytes) throw new ConfigError(file, [`larger than ${opts.maxBytes} bytes`]);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return opts.empty();
    throw new ConfigError(file, [`cannot read ${opts.what} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(file, [`${opts.what} is not valid JSON`]);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ConfigError(file, [`${opts.what} is invalid: ${describeIssues(parsed.error)}`]);
  return parsed.data;
}
