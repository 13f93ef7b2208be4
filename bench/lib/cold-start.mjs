// Starting the agent as a device starts it after boot: its program file not in the page cache.
//
// The file-backed part of a process's RSS is not only the pages it reads: on a page fault Linux maps
// the neighbouring pages that are already in the page cache too (fault-around, 64 KiB). A binary
// that was just built or copied, or that other processes run (the hub, the load generator: the same
// Node binary), is all in the cache, so an agent started from it counted 8-13 MB more file-backed
// RSS than one started from a cold file (issue 6, eleventh round: the executable 80.7 against 67.6
// MB, the same build). A device's agent is the only process that runs its binary, read from storage.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** Drops `file`'s pages from the page cache (posix_fadvise DONTNEED via dd; no privileges needed). Pages a process maps stay. */
export function evictFromPageCache(file) {
  const r = spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  if (r.status !== 0) throw new Error(`dd could not drop ${file} from the page cache: ${r.stderr}`);
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
