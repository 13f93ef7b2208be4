import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/proc.js';

/**
 * The unit files: `systemd-analyze verify` (no errors, no warnings) and `systemd-analyze security`
 * (offline: an exposure of at most 2.5 on its 0-10 scale). verify wants ExecStart's program to
 * exist, so the copies point at a stub. .ci/run installs the systemd package for systemd-analyze.
 */

const UNITS = ['devstreams-agent.service', 'devstreams-hub.service'];
const hasAnalyze = spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'devstreams-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function copies(): string[] {
  const stub = join(dir, 'devstreams');
  writeFileSync(stub, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  return UNITS.map((u) => {
    const file = join(dir, u);
    writeFileSync(file, readFileSync(join(ROOT, 'systemd', u), 'utf8').replaceAll('/usr/bin/devstreams', stub));
    return file;
  });
}

/** The [Service] settings of a unit file, last assignment wins (as systemd reads most of them). */
function settings(unit: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(join(ROOT, 'systemd', unit), 'utf8').split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

describe.skipIf(!hasAnalyze)(`systemd units${hasAnalyze ? '' : ' (skipped: systemd-analyze is not installed)'}`, () => {
  it('systemd-analyze verify passes without a warning', () => {
    const r = spawnSync('systemd-analyze', ['verify', ...copies()], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('systemd-analyze security rates both units at most 2.5', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--threshold=25', '--no-pager', ...copies()], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});

describe('systemd unit settings', () => {
  it.each(UNITS)('%s: notify, watchdog, always restarted, its own user, sandboxed', (unit) => {
    const s = settings(unit);
    expect(s.get('Type')).toBe('notify');
    expect(s.get('NotifyAccess')).toBe('all'); // notifications come from a systemd-notify child
    expect(Number(s.get('WatchdogSec'))).toBeGreaterThan(0);
    expect(s.get('Restart')).toBe('always');
    expect(s.get('User')).toBe('devstreams');
    expect(s.get('StateDirectory')).toMatch(/^devstreams/);
    for (const [k, v] of Object.entries({
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      SystemCallArchitectures: 'native',
    })) {
      expect(s.get(k), k).toBe(v);
    }
    expect(s.get('RestrictAddressFamilies')!.split(' ')).not.toContain('AF_PACKET');
  });

  it('the agent has no capability; the hub only CAP_NET_BIND_SERVICE (to listen on 443)', () => {
    const agent = settings('devstreams-agent.service');
    expect(agent.get('CapabilityBoundingSet')).toBe('');
    expect(agent.get('AmbientCapabilities')).toBe('');
    expect(agent.get('ConfigurationDirectory')).toBe('devstreams');
    const hub = settings('devstreams-hub.service');
    expect(hub.get('CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    expect(hub.get('AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
  });
});
