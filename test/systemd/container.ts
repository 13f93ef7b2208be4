import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Debian's systemd as PID 1 in systemd-nspawn, the way ../shared/SYSTEMD-TESTING.md found works on
 * this kind of machine: a debootstrap'ed bookworm root (cached as a directory, booted read-only with --volatile=overlay), a private cgroup,
 * --register=no --keep-unit (no systemd or D-Bus on the host), a results folder bind-mounted.
 */

export const CACHE_DIR = '/var/cache/devstreams-test';
/** The debootstrap'ed tree, never written to: containers boot it with --volatile=overlay. */
const CACHED_ROOT = join(CACHE_DIR, 'debian-bookworm-systemd');
const WORK_DIR = '/var/tmp';

/** Why a container cannot start here, or '' if it can try. */
export function containerUnavailable(): string {
  if (process.getuid?.() !== 0) return 'not root';
  for (const cmd of ['systemd-nspawn', 'debootstrap', 'timeout']) {
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) return `${cmd} is not installed (.ci/run installs systemd-container and debootstrap)`;
  }
  for (const d of ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified']) {
    if (!existsSync(d)) return `${d} is missing (this test expects the host's hybrid cgroup layout)`;
  }
  return '';
}

/** The Debian mirror apt on this machine uses (a deb822 .sources file or sources.list). */
export function aptMirror(): string {
  const files = ['/etc/apt/sources.list', ...safeList('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f))];
  for (const f of files) {
    if (!/\.(list|sources)$/.test(f) || !existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    const deb822 = /^URIs:\s*(\S+)/m.exec(text);
    if (deb822 && /debian\/?$/.test(deb822[1]!)) return deb822[1]!;
    const one = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+debian\/?)\s+bookworm\b/m.exec(text);
    if (one) return one[1]!;
  }
  return 'http://deb.debian.org/debian';
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * The cached Debian root, made once with debootstrap (about 40 s and 250 MB) and kept as a
 * directory: every container boots it read-only with a tmpfs overlay, so no run copies or changes it.
 */
export async function cachedRoot(): Promise<string> {
  if (existsSync(CACHED_ROOT)) return CACHED_ROOT;
  mkdirSync(CACHE_DIR, { recursive: true });
  const tmp = mkdtempSync(join(CACHE_DIR, '.debootstrap-'));
  try {
    await run('debootstrap', ['--variant=minbase', '--include=systemd,systemd-sysv,dbus', 'bookworm', join(tmp, 'root'), aptMirror()], 600_000);
    renameSync(join(tmp, 'root'), CACHED_ROOT); // atomic: a concurrent or killed run never sees half of it
  } catch (err) {
    if (!existsSync(CACHED_ROOT)) throw err; // (a concurrent run won the rename: fine)
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return CACHED_ROOT;
}

export interface BootResult {
  code: number | null;
  output: string;
  /** True if systemd came up as PID 1 (its banner is on the console). */
  booted: boolean;
}

/**
 * One boot of the cached root: `boot()` runs it with the given bind mounts (the only way files get
 * in: the root itself is read-only, its changes live in a tmpfs) until it powers off or
 * `timeoutSec` passes; `remove()` deletes everything it made.
 */
export class Container {
  readonly name = `devstreams-test-${process.pid}-${Date.now() % 100000}`;
  /** A small folder of this run's own (files to bind in, results). */
  readonly dir = mkdtempSync(join(WORK_DIR, 'devstreams-nspawn-'));
  private readonly cgroups = ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'].map((c) => join(c, this.name));

  async boot(binds: { ro?: Record<string, string>; rw?: Record<string, string> }, timeoutSec: number): Promise<BootResult> {
    const root = await cachedRoot();
    for (const c of this.cgroups) mkdirSync(c, { recursive: true });
    const args = [
      '-k', '5', String(timeoutSec), 'systemd-nspawn', '-q', '-D', root, '--volatile=overlay', '--boot', '--register=no', '--keep-unit',
      '--console=pipe', '-M', this.name, '--private-network',
      '--capability=CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON', '--system-call-filter=bpf',
      ...Object.entries(binds.ro ?? {}).map(([from, to]) => `--bind-ro=${from}:${to}`),
      ...Object.entries(binds.rw ?? {}).map(([from, to]) => `--bind=${from}:${to}`),
    ];
    // A shell that moves itself into the container's own cgroups, then becomes `timeout … nspawn`.
    const script = `${this.cgroups.map((c) => `echo $$ > ${c}/cgroup.procs`).join(' && ')} && exec timeout "$@"`;
    const child = spawn('sh', ['-c', script, 'sh', ...args], {
      env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const [code] = (await once(child, 'close')) as [number | null];
    return { code, output, booted: /systemd 2\d\d running in system mode|Welcome to/.test(output) };
  }

  /** Removes this run's folder, the cgroups (deepest first) and nspawn's propagation folder. Idempotent. */
  remove(): void {
    for (const c of this.cgroups) removeCgroup(c);
    rmSync(join('/run/systemd/nspawn/propagate', this.name), { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) removeCgroup(p);
  }
  try {
    rmdirSync(dir);
  } catch {
    // still populated (a process outlived the timeout's SIGKILL): leave it rather than fail the test
  }
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed (${code}): ${err}`))));
  });
}
