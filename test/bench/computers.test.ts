import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error: bench/ is plain JavaScript, without declarations
import { computersOf, parseShares } from '../../bench/lib/computers.mjs';
// @ts-expect-error: bench/ is plain JavaScript, without declarations
import { CpuQuotaGroups, findCpuController, quotaFiles } from '../../bench/lib/cpu-quota.mjs';
// @ts-expect-error: bench/ is plain JavaScript, without declarations
import { cpuNs } from '../../bench/lib/procs.mjs';

// bench/computers.mjs: a tunnel's parties each held to a share of a core, as on computers of their own.
describe('the computers of a tunnel, as CPU quota groups', () => {
  it('reads one share for all three computers, or one for each, and names what is wrong', () => {
    expect(parseShares('0.5')).toEqual({ user: 0.5, hub: 0.5, device: 0.5 });
    expect(parseShares('user=0.8,hub=0.6,device=0.3')).toEqual({ user: 0.8, hub: 0.6, device: 0.3 });
    expect(() => parseShares('0')).toThrow(/"0" is not a share/);
    expect(() => parseShares('half')).toThrow(/"half" is not a share/);
    expect(() => parseShares('user=0.8,hub=0.6')).toThrow(/no share for device/);
    expect(() => parseShares('user=0.8,hub=0.6,device=0.3,user=1')).toThrow(/user given twice/);
    expect(() => parseShares('user=0.8,router=0.6,device=0.3')).toThrow(/"router=0.6": expected one of user=N, hub=N, device=N/);
    expect(() => parseShares('user=0.8,hub=,device=0.3')).toThrow(/"" is not a share/);
  });

  it('puts the service side on the user computer, the device side on the device, and what is between on the hub', () => {
    expect(computersOf([11, 22, 33], ['forward', 'hub', 'agent'])).toEqual([
      { name: 'user', procs: [{ pid: 11, party: 'forward' }] },
      { name: 'hub', procs: [{ pid: 22, party: 'hub' }] },
      { name: 'device', procs: [{ pid: 33, party: 'agent' }] },
    ]);
    // ssh -L: no hub.
    expect(computersOf([11, 33], ['ssh', 'sshd'])).toEqual([
      { name: 'user', procs: [{ pid: 11, party: 'ssh' }] },
      { name: 'device', procs: [{ pid: 33, party: 'sshd' }] },
    ]);
    // socat x3: two hops between, both on the hub.
    expect(computersOf([1, 2, 3, 4]).map((c: { procs: unknown[] }) => c.procs.length)).toEqual([1, 2, 1]);
  });

  it('writes the quota for either cgroup version, and refuses a share or period that means nothing', () => {
    expect(quotaFiles('v1', 0.5, 10_000)).toEqual({ 'cpu.cfs_period_us': '10000', 'cpu.cfs_quota_us': '5000' });
    expect(quotaFiles('v2', 0.25, 20_000)).toEqual({ 'cpu.max': '5000 20000' });
    expect(() => quotaFiles('v1', 0, 10_000)).toThrow(/above 0/);
    expect(() => quotaFiles('v1', 0.5, 500)).toThrow(/at least 1000 us/);
  });

  it('finds the cpu controller of either version, and none where it cannot write', () => {
    const root = mkdtempSync(join(tmpdir(), 'cgroup-root-'));
    try {
      expect(findCpuController(root)).toBeUndefined();
      writeFileSync(join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
      expect(findCpuController(root)).toEqual({ kind: 'v2', dir: root });
      mkdirSync(join(root, 'cpu'));
      writeFileSync(join(root, 'cpu', 'cpu.cfs_quota_us'), '-1\n');
      expect(findCpuController(root)).toEqual({ kind: 'v1', dir: join(root, 'cpu') });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

const controller = findCpuController();
describe.skipIf(!controller)(`a CPU quota group on this host${controller ? '' : ' (skipped: no writable cgroup cpu controller: not root)'}`, () => {
  interface Group {
    dir: string;
    add(pid: number): void;
    pids(): number[];
    throttling(): { periods: number; throttled: number };
  }
  let groups: { create(name: string, share: number): Group; stop(): void } | undefined;
  afterEach(() => groups?.stop());

  it('holds a busy process and the children it forked to their share, and is gone after stop()', async () => {
    const quota = (groups = new CpuQuotaGroups({ periodUs: 10_000, controller }));
    const g = quota.create('test', 0.2);
    // A parent that spins, with a child that spins too: both are held, together, to 0.2 of a core.
    const spin = 'const end = Date.now() + 1500; while (Date.now() < end);';
    const busy = spawn(process.execPath, ['-e', `require('child_process').spawn(process.execPath, ['-e', ${JSON.stringify(spin)}], { stdio: 'inherit' }); ${spin}`], { stdio: 'ignore' });
    await once(busy, 'spawn');
    // Both in, once the child exists.
    const deadline = Date.now() + 5000;
    while (!readFileSync(`/proc/${busy.pid}/task/${busy.pid}/children`, 'utf8').trim() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const cpu0 = cpuNs(busy.pid!);
    const t0 = performance.now();
    g.add(busy.pid!);
    expect(g.pids().length).toBe(2);
    await new Promise((r) => setTimeout(r, 600));
    const share = (cpuNs(busy.pid!) - cpu0) / ((performance.now() - t0) * 1e6);
    // Two spinning processes take up to two cores unheld; held, 0.2 (CPU time is counted in 10 ms ticks).
    expect(share).toBeLessThan(0.45);
    expect(g.throttling().throttled).toBeGreaterThan(0);
    quota.stop();
    expect(existsSync(g.dir)).toBe(false);
    busy.kill('SIGKILL');
    await once(busy, 'exit');
  });
});
