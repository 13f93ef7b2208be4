import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/proc.js';
import { ARCHES, canBuild, ensureBinaries, exePath, NODE_VERSION, PKG_VERSION, run, runnerFor, type Arch } from './binaries.js';

/**
 * npm run build:deb, checked with dpkg-deb --info/--contents, then installed for real with
 * `dpkg --root=TMP --force-script-chrootless` into a throwaway root: the maintainer scripts run on
 * this host with DPKG_ROOT=TMP and must touch nothing outside it. Not covered here (needs a booted
 * systemd): the unit's start behaviour. --force-depends: the throwaway root has no libc6 or passwd.
 */

const haveDpkg = existsSync('/usr/bin/dpkg-deb') && existsSync('/usr/bin/deb-systemd-helper') && existsSync('/usr/sbin/useradd');
const DEB_ARCH: Record<Arch, string> = { arm64: 'arm64', x64: 'amd64' };

describe.skipIf(!haveDpkg || !canBuild)('the devstreams-agent .deb', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'devstreams-deb-'));
  const debs = (arch: Arch): string => join(tmp, `devstreams-agent_${PKG_VERSION}_${DEB_ARCH[arch]}.deb`);

  beforeAll(async () => {
    await ensureBinaries();
    // Uncompressed: the same contents as the shipped xz packages without minutes of xz on 200 MB.
    const r = await run([process.execPath, join(ROOT, 'scripts/build-deb.mjs'), '--out', tmp, '--compression', 'none'], { timeoutMs: 5 * 60_000 });
    expect(r.code, r.stderr).toBe(0);
  }, 10 * 60_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it.each(ARCHES)('%s: dpkg-deb --info shows the control fields and the maintainer scripts', (arch) => {
    const info = execFileSync('dpkg-deb', ['--info', debs(arch)], { encoding: 'utf8' });
    expect(info).toContain('Package: devstreams-agent');
    expect(info).toContain(`Version: ${PKG_VERSION}`);
    expect(info).toContain(`Architecture: ${DEB_ARCH[arch]}`);
    expect(info).toContain(`Node.js ${NODE_VERSION} inside`);
    for (const s of ['postinst', 'prerm', 'postrm', 'conffiles']) expect(info).toMatch(new RegExp(`\\s${s}\\b`));
    expect(execFileSync('dpkg-deb', ['--ctrl-tarfile', debs(arch)]).length).toBeGreaterThan(0);
    expect(execFileSync('sh', ['-c', `dpkg-deb -I '${debs(arch)}' conffiles`], { encoding: 'utf8' })).toBe('/etc/devstreams/agent.yaml\n');
  });

  it.each(ARCHES)('%s: dpkg-deb --contents lists the files with their modes, all owned by root', (arch) => {
    const lines = execFileSync('dpkg-deb', ['--contents', debs(arch)], { encoding: 'utf8' }).trim().split('\n');
    const files = new Map(lines.map((l) => l.split(/\s+/)).map((f) => [f[5]!, { mode: f[0]!, owner: f[1]! }]));
    expect(files.get('./usr/bin/devstreams')?.mode).toBe('-rwxr-xr-x');
    expect(files.get('./etc/devstreams/agent.yaml')?.mode).toBe('-rw-------');
    expect(files.get('./lib/systemd/system/devstreams-agent.service')?.mode).toBe('-rw-r--r--');
    expect(files.get('./lib/systemd/system/devstreams-agent.service.d/unconfigured.conf')?.mode).toBe('-rw-r--r--');
    expect(files.has('./usr/share/doc/devstreams-agent/copyright')).toBe(true);
    expect([...files.values()].every((f) => f.owner === 'root/root')).toBe(true);
  });

  describe.each(ARCHES)('%s: installed into a throwaway root', (arch) => {
    const root = join(tmp, `root-${arch}`);
    const dpkg = (...args: string[]) =>
      run(['dpkg', `--root=${root}`, '--force-script-chrootless', '--force-depends', '--force-architecture', '--force-unsafe-io', ...args], { timeoutMs: 120_000 });
    const hostPasswd = (): string => sha256(readFileSync('/etc/passwd')) + sha256(readFileSync('/etc/group'));
    let hostBefore = '';

    beforeAll(() => {
      for (const d of ['etc', 'usr/sbin', 'var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/log']) mkdirSync(join(root, d), { recursive: true });
      writeFileSync(join(root, 'var/lib/dpkg/status'), '');
      writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
      writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
      hostBefore = hostPasswd();
    });

    it('dpkg -i: executable, unit and drop-in in place; user created; config 0600 owned by it; unit enabled', async () => {
      const r = await dpkg('-i', debs(arch));
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(readFileSync(join(root, 'usr/bin/devstreams')))).toBe(sha256(readFileSync(exePath(arch))));
      expect(readFileSync(join(root, 'lib/systemd/system/devstreams-agent.service'), 'utf8')).toBe(
        readFileSync(join(ROOT, 'systemd/devstreams-agent.service'), 'utf8'),
      );
      expect(existsSync(join(root, 'lib/systemd/system/devstreams-agent.service.d/unconfigured.conf'))).toBe(true);

      const user = readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('devstreams:'))!.split(':');
      expect(Number(user[2])).toBeLessThan(1000); // a system user
      expect(user[6]).toBe('/bin/false'); // the throwaway root has no /usr/sbin/nologin
      const conf = statSync(join(root, 'etc/devstreams/agent.yaml'));
      expect({ mode: conf.mode & 0o777, uid: conf.uid, gid: conf.gid }).toEqual({ mode: 0o600, uid: Number(user[2]), gid: Number(user[3]) });

      const link = join(root, 'etc/systemd/system/multi-user.target.wants/devstreams-agent.service');
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readlinkSync(link)).toBe('/lib/systemd/system/devstreams-agent.service');
      expect(hostPasswd()).toBe(hostBefore); // nothing was done to this host's users
    });

    it.skipIf(!runnerFor(arch))('the installed executable runs', async () => {
      const r = await run([...runnerFor(arch)!, join(root, 'usr/bin/devstreams'), '--version'], { timeoutMs: 120_000 });
      expect(r.stdout.toString()).toBe(`devstreams ${PKG_VERSION} (node v${NODE_VERSION})\n`);
    }, 130_000);

    it('reinstall keeps an edited config and the user; purge removes the files and the enable link', async () => {
      const conf = join(root, 'etc/devstreams/agent.yaml');
      writeFileSync(conf, 'hub: {}\n'); // "configured" by the admin
      expect((await dpkg('-i', '--force-confold', debs(arch))).code).toBe(0);
      expect(readFileSync(conf, 'utf8')).toBe('hub: {}\n');
      expect(readFileSync(join(root, 'etc/passwd'), 'utf8').match(/^devstreams:/gm)).toHaveLength(1);

      const purge = await dpkg('--purge', 'devstreams-agent');
      expect(purge.code, purge.stderr).toBe(0);
      for (const f of ['usr/bin/devstreams', 'etc/devstreams/agent.yaml', 'lib/systemd/system/devstreams-agent.service']) {
        expect(existsSync(join(root, f)), f).toBe(false);
      }
      expect(existsSync(join(root, 'etc/systemd/system/multi-user.target.wants/devstreams-agent.service'))).toBe(false);
      // Debian keeps system users on purge (their files may outlive the package).
      expect(readFileSync(join(root, 'etc/passwd'), 'utf8')).toMatch(/^devstreams:/m);
      expect(hostPasswd()).toBe(hostBefore);
    }, 130_000);
  });
});

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
