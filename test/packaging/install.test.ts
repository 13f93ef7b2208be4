import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentConfigSchema } from '../../agent/config.js';
import { ROOT } from '../helpers/proc.js';
import { canBuild, ensureBinaries, exePath, run } from './binaries.js';

/** scripts/install.sh into a temporary root (DESTDIR), the shipped example config, and its start guard. */

const EXAMPLE = join(ROOT, 'packaging/agent.yaml');
const DROP_IN = join(ROOT, 'packaging/systemd/unconfigured.conf');
const haveTools = existsSync('/usr/sbin/useradd') && existsSync('/usr/bin/systemctl');

describe.skipIf(!haveTools || !canBuild)('scripts/install.sh with DESTDIR', () => {
  const root = mkdtempSync(join(tmpdir(), 'devstreams-install-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const install = () => run([join(ROOT, 'scripts/install.sh'), exePath('x64')], { env: { DESTDIR: root }, timeoutMs: 120_000 });
  const host = (): string => ['/etc/passwd', '/etc/group'].map((f) => createHash('sha256').update(readFileSync(f)).digest('hex')).join();

  it('installs the executable, unit, drop-in and example config into the root, creates the user there, enables the unit', async () => {
    await ensureBinaries();
    mkdirSync(join(root, 'etc'));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
    const before = host();
    const r = await install();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toMatch(/installed into /);

    expect(statSync(join(root, 'usr/bin/devstreams')).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(root, 'etc/systemd/system/devstreams-agent.service'), 'utf8')).toBe(readFileSync(join(ROOT, 'systemd/devstreams-agent.service'), 'utf8'));
    expect(readFileSync(join(root, 'etc/systemd/system/devstreams-agent.service.d/unconfigured.conf'), 'utf8')).toBe(readFileSync(DROP_IN, 'utf8'));
    const user = readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('devstreams:'))!.split(':');
    const conf = statSync(join(root, 'etc/devstreams/agent.yaml'));
    expect({ mode: conf.mode & 0o777, uid: conf.uid, gid: conf.gid }).toEqual({ mode: 0o600, uid: Number(user[2]), gid: Number(user[3]) });
    expect(readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants/devstreams-agent.service'))).toBe('/etc/systemd/system/devstreams-agent.service');
    expect(host()).toBe(before);
  }, 10 * 60_000);

  it('run again: keeps a configured agent.yaml and does not add the user twice', async () => {
    const conf = join(root, 'etc/devstreams/agent.yaml');
    writeFileSync(conf, 'configured: true\n');
    const r = await install();
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(conf, 'utf8')).toBe('configured: true\n');
    expect(readFileSync(join(root, 'etc/passwd'), 'utf8').match(/^devstreams:/gm)).toHaveLength(1);
  }, 130_000);

  it('refuses a DESTDIR that is not a root file system, naming it', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'devstreams-install-empty-'));
    try {
      const r = await run([join(ROOT, 'scripts/install.sh'), exePath('x64')], { env: { DESTDIR: empty } });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`install.sh: DESTDIR ${empty} has no etc/passwd (not a root file system)\n`);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('the shipped example /etc/devstreams/agent.yaml', () => {
  it('is valid for the agent once filled in (the schema of agent/config.ts)', () => {
    const r = AgentConfigSchema.safeParse(parse(readFileSync(EXAMPLE, 'utf8')));
    expect(r.success, JSON.stringify(r.error?.issues)).toBe(true);
  });

  it('stays valid with its commented-out settings switched on (tlsCipher, runtime.gc)', () => {
    const text = readFileSync(EXAMPLE, 'utf8')
      .replace(/^  # (tlsCipher: \S+)/m, '  $1')
      .replace(/^# (runtime:)\n#(   gc: \S+)/m, '$1\n$2');
    const r = AgentConfigSchema.safeParse(parse(text));
    expect(r.success, JSON.stringify(r.error?.issues)).toBe(true);
    expect(r.data?.hub.tlsCipher).toBe('auto');
    expect(r.data?.runtime.gc).toBe('auto');
    // Switched on, not defaulted: a wrong value there would fail.
    expect(AgentConfigSchema.safeParse(parse(text.replace(/^  tlsCipher: auto/m, '  tlsCipher: fastest'))).success).toBe(false);
    expect(AgentConfigSchema.safeParse(parse(text.replace(/^(\s+)gc: auto/m, '$1gc: fastest'))).success).toBe(false);
  });

  // The drop-in's ExecCondition, run by /bin/sh against a copy of the file: 1 skips the start.
  const condition = (file: string): number => {
    const line = readFileSync(DROP_IN, 'utf8').split('\n').find((l) => l.startsWith('ExecCondition='))!;
    const script = /-c '(.*)'$/.exec(line)![1]!.replace('/etc/devstreams/agent.yaml', file);
    try {
      execFileSync('/bin/sh', ['-c', script]);
      return 0;
    } catch (err) {
      return (err as { status: number }).status;
    }
  };

  it('keeps the service from starting until its first line is removed, or it is replaced', () => {
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-cond-'));
    try {
      const file = join(dir, 'agent.yaml');
      const text = readFileSync(EXAMPLE, 'utf8');
      writeFileSync(file, text);
      expect(condition(file)).toBe(1);
      writeFileSync(file, text.slice(text.indexOf('\n') + 1));
      expect(condition(file)).toBe(0);
      writeFileSync(file, 'hub:\n  deviceId: pi-kitchen\n');
      expect(condition(file)).toBe(0);
      rmSync(file);
      expect(condition(file)).toBe(0); // then the agent itself says the file is missing
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
