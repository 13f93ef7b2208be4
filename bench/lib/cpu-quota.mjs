// Computers on one host: each group of processes is held to a share of a core by the kernel's CPU
// bandwidth control (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), so that a tunnel's parties
// (the user's computer, the hub, the device) each run as on a computer of its own instead of
// sharing the host's cores (bench/lib/computers.mjs). Needs root and the cgroup cpu controller.
import { accessSync, constants, existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { descendants } from './procs.mjs';

/** The prefix of every group this module makes: stale ones (a run that was killed) are removed by name. */
const PREFIX = 'devstreams-bench-';

/**
 * Where the cpu controller is, under `root` (/sys/fs/cgroup): `{ kind: 'v1', dir }` for a v1
 * hierarchy with the cpu controller, `{ kind: 'v2', dir }` for a unified one that offers it, or
 * undefined (neither, or not writable: not root).
 */
export function findCpuController(root = '/sys/fs/cgroup') {
  const writable = (dir) => {
    try {
      accessSync(dir, constants.W_OK);
      return true;
    } catch {
      return false;
    }
  };
  const v1 = join(root, 'cpu');
  if (existsSync(join(v1, 'cpu.cfs_quota_us'))) return writable(v1) ? { kind: 'v1', dir: v1 } : undefined;
  try {
    if (readFileSync(join(root, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('cpu') && writable(root)) return { kind: 'v2', dir: root };
  } catch {
    /* no unified hierarchy here */
  }
  return undefined;
}

/** What one group is held to: `share` of a core in every period of `periodUs`. */
export function quotaFiles(kind, share, periodUs) {
  if (!(share > 0) || !(periodUs >= 1000)) throw new Error(`a CPU share must be above 0 and a period at least 1000 us (got ${share}, ${periodUs})`);
  const quotaUs = Math.round(share * periodUs);
  return kind === 'v1'
    ? { 'cpu.cfs_period_us': String(periodUs), 'cpu.cfs_quota_us': String(quotaUs) }
    : { 'cpu.max': `${quotaUs} ${periodUs}` };
}

/**
 * The groups of one run. `create(name, share)` makes one held to `share` of a core; its `add(pid)`
 * moves a process and its living descendants in (children forked later start inside). `stop()`
 * moves whatever is still inside back to the top and removes the groups: idempotent.
 */
export class CpuQuotaGroups {
  constructor({ periodUs = 10_000, controller = findCpuController() } = {}) {
    if (!controller) throw new Error('no cgroup cpu controller to write to: run as root on Linux with cgroup v1 (cpu) or v2 (cpu.max)');
    this.controller = controller;
    this.periodUs = periodUs;
    this.groups = [];
  }

  /** Removes empty groups left by a run that was killed before its stop(). */
  removeStale() {
    for (const d of readdirSync(this.controller.dir)) {
      if (!d.startsWith(PREFIX)) continue;
      try {
        rmdirSync(join(this.controller.dir, d));
      } catch {
        /* still has processes: leave it */
      }
    }
  }

  create(name, share) {
    const files = quotaFiles(this.controller.kind, share, this.periodUs); // before anything is made
    const dir = join(this.controller.dir, `${PREFIX}${name}-${process.pid}`);
    mkdirSync(dir);
    const group = new QuotaGroup(name, dir, share);
    this.groups.push(group);
    // v2 offers a controller to a child only when its parent passes it on.
    if (this.controller.kind === 'v2') writeFileSync(join(this.controller.dir, 'cgroup.subtree_control'), '+cpu');
    for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), v);
    return group;
  }

  stop() {
    const top = join(this.controller.dir, 'cgroup.procs');
    for (const g of this.groups.splice(0)) {
      for (const pid of g.pids()) {
        try {
          writeFileSync(top, String(pid));
        } catch {
          /* exited meanwhile */
        }
      }
      rmdirSync(g.dir);
    }
  }
}

class QuotaGroup {
  constructor(name, dir, share) {
    this.name = name;
    this.dir = dir;
    this.share = share;
  }

  add(pid) {
    writeFileSync(join(this.dir, 'cgroup.procs'), String(pid));
    for (const p of descendants(pid)) {
      try {
        writeFileSync(join(this.dir, 'cgroup.procs'), String(p));
      } catch {
        /* exited since it was listed */
      }
    }
  }

  pids() {
    return readFileSync(join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  }

  /** Periods so far and how many of them ran out of quota (the group was held back). */
  throttling() {
    const stat = Object.fromEntries(readFileSync(join(this.dir, 'cpu.stat'), 'utf8').trim().split('\n').map((l) => l.split(' ')));
    return { periods: Number(stat.nr_periods), throttled: Number(stat.nr_throttled) };
  }
}
