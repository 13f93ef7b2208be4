// Starting the agent as a device starts it after boot: its program file not in the page cache.
//
// The file-backed part of a process's RSS is not only the pages it reads: on a page fault Linux maps
// the neighbouring pages that are already in the page cache too (fault-around, 64 KiB). A binary
// that was just written (built, copied, installed) is wholly in the cache, so an agent started from
// it counted 8-13 MB more file-backed RSS than one started from a cold file (issue 6, eleventh
// round: the executable 79.5-81.5 against 67.5-67.7 MB, the same build). Those are clean pages the
// kernel drops under memory pressure, and after a reboot a device's agent starts cold. (A Node
// binary that only other processes had run showed no such difference: the development build's
// agent counted 54.3 MB file-backed warm and 54.4 cold, since only pages they had read were cached.)
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Drops `file`'s pages from the page cache (posix_fadvise DONTNEED via dd; no privileges needed).
 * Written out first: DONTNEED drops only clean pages, and `npm run bench` may build the executable
 * a moment before it measures it (one such run counted 52.5 MB file-backed instead of 47.5).
 * Pages a process maps stay.
 */
export function evictFromPageCache(file) {
  const w = spawnSync('sync', [file]);
  if (w.status !== 0) throw new Error(`sync could not write ${file} out: ${w.stderr}`);
  const r = spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  if (r.status !== 0) throw new Error(`dd could not drop ${file} from the page cache: ${r.stderr}`);
}

/**
 * What to run the agent with, started cold: the executable `exe` itself once dropped from the cache,
 * or, for the development build, a private copy of `node` in `dir` (the original is mapped by the
 * bench's other processes, and the pages a running process maps stay cached).
 */
export function coldAgentProgram({ exe, node, dir, name = 'agent-node' }) {
  if (exe) {
    evictFromPageCache(exe);
    return exe;
  }
  return coldCopy(node, dir, name);
}

/** A private copy of `file` in `dir` (written out, then dropped from the cache), for one process to run cold. */
export function coldCopy(file, dir, name = 'agent-node') {
  const copy = join(dir, name);
  const r = spawnSync('dd', [`if=${file}`, `of=${copy}`, 'bs=1M', 'conv=fsync', 'status=none']);
  if (r.status !== 0) throw new Error(`dd could not copy ${file}: ${r.stderr}`);
  spawnSync('chmod', ['755', copy]);
  evictFromPageCache(copy);
  return copy;
}
