// Descriptor and memory counts of a running process, from /proc (Linux). Shared by the soak
// (scripts/soak.mjs) and the daemon tests (test/daemon/harness.ts), which compare them before and after.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** Open descriptors of `pid`, and how many of them are sockets. */
export function fdCounts(pid) {
  const fds = readdirSync(`/proc/${pid}/fd`);
  let sockets = 0;
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++;
    } catch {
      // closed while we looked
    }
  }
  return { fds: fds.length, sockets };
}

/** fdCounts plus the resident set size in MiB (one decimal). */
export function procStats(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { rssMiB: +(rssKiB / 1024).toFixed(1), ...fdCounts(pid) };
}
