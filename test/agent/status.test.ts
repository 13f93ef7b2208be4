import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatusCollector } from '../../agent/status-collector.js';
import { defaultRouteInterface, parseOsRelease } from '../../agent/status-probes.js';
import { DeviceStatusSchema, LIMITS, topics, type DeviceSystem } from '../../protocol/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub } from './fake-hub.js';
import { captureLog } from './helpers.js';

/**
 * The device status's machine facts (agent/status-probes.ts): the built agent, run under Node's
 * permission model with child processes forbidden, publishes a status whose values match what
 * /proc, df, ip and the os module say; and the probes' parsing of hardware this machine lacks
 * (temperature sensors, a Raspberry Pi's device tree, DMI) against file trees made here.
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const DEVICE = 'status-dev';
let tls: TestTls;
let hub: FakeHub;
let dir: string;

beforeAll(async () => {
  tls = makeTestTls();
  hub = new FakeHub(tls);
  await hub.start();
  dir = mkdtempSync(join(os.tmpdir(), 'devstreams-status-'));
  writeFileSync(join(dir, 'dev.key'), hub.addDevice(DEVICE));
  writeFileSync(join(dir, 'ca.pem'), tls.ca);
  writeFileSync(
    join(dir, 'agent.yaml'),
    `hub:\n  url: ${hub.url}\n  deviceId: ${DEVICE}\n  keyFile: dev.key\n  ca: ca.pem\nallow:\n  - { name: echo, builtin: echo }\n`,
    { mode: 0o600 },
  );
});

afterAll(async () => {
  await hub?.stop();
});

function memAvailableNow(): number {
  return Number(/^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
}

describe('device status from a real agent process', () => {
  it('carries the values /proc, df, ip and os report, and starts no process to get them', async () => {
    // Child processes are refused under the permission model: a probe that spawned one would fail
    // (its field null, "status probe failed" in the log).
    const permission = process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
    const memBefore = memAvailableNow();
    const ifacesBefore = externalInterfaces();
    const agent = spawn(process.execPath, [permission, '--allow-fs-read=*', join(ROOT, 'dist/devstreams.mjs'), 'agent', '--config', join(dir, 'agent.yaml')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: '' },
    });
    let out = '';
    agent.stdout.on('data', (d: Buffer) => (out += d.toString()));
    agent.stderr.on('data', (d: Buffer) => (out += d.toString()));
    let system: DeviceSystem;
    try {
      const m = await Promise.race([
        hub.waitFor((p) => p.topic === topics.status(DEVICE) && p.payload.includes('"memAvailableBytes":') && !p.payload.includes('"memAvailableBytes":null')),
        once(agent, 'exit').then(([code]) => Promise.reject(new Error(`agent exited (${code}): ${out}`))),
      ]);
      const status = DeviceStatusSchema.parse(JSON.parse(m.payload));
      system = status.system!;
    } finally {
      agent.kill('SIGTERM');
      if (agent.exitCode === null) await once(agent, 'exit');
    }
    const memAfter = memAvailableNow();
    expect(out).not.toContain('status probe failed');
    expect(out).not.toContain('ERR_ACCESS_DENIED');

    const release = parseOsReleaseByHand(readFileSync(existsSync('/etc/os-release') ? '/etc/os-release' : '/usr/lib/os-release', 'utf8'));
    expect(system.os).toBe(`${release.NAME} ${release.VERSION_ID}`);
    expect(system.kernel).toBe(os.release());
    expect(system.arch).toBe(os.arch());
    expect(system.hostname).toBe(os.hostname());
    expect(system.cpuCount).toBe(os.cpus().length);
    expect(system.memTotalBytes).toBe(os.totalmem());
    // MemAvailable moves with the machine's other work: within a quarter of what /proc said around it.
    expect(system.memAvailableBytes!).toBeGreaterThan(Math.min(memBefore, memAfter) * 0.75);
    expect(system.memAvailableBytes!).toBeLessThan(Math.max(memBefore, memAfter) * 1.25);

    // df -P: 1024-byte blocks; the total is exact, the used space may move a little meanwhile.
    const [, total, used] = execFileSync('df', ['-kP', '/'], { encoding: 'utf8' }).trim().split('\n').at(-1)!.split(/\s+/).map(Number);
    expect(system.diskTotalBytes).toBe(total! * 1024);
    expect(Math.abs(system.diskUsedBytes! - used! * 1024)).toBeLessThan(total! * 1024 * 0.01);

    // Other suites create interfaces (network namespaces, veth pairs) while this runs: the agent's
    // list lies between what os saw before and after it.
    const ifacesAfter = externalInterfaces();
    const ifaces = system.interfaces!;
    const names = ifaces.map((i) => i.name);
    expect(ifaces.length).toBe(Math.min(LIMITS.maxStatusInterfaces, names.length));
    for (const n of names) expect(ifacesBefore.has(n) || ifacesAfter.has(n)).toBe(true);
    const both = [...ifacesBefore.keys()].filter((n) => ifacesAfter.has(n));
    if (both.length <= LIMITS.maxStatusInterfaces) for (const n of both) expect(names).toContain(n);
    for (const i of ifaces) {
      const addrs = [...(ifacesBefore.get(i.name) ?? []), ...(ifacesAfter.get(i.name) ?? [])];
      expect(addrs.map((a) => (a.mac === '00:00:00:00:00:00' ? null : a.mac))).toContain(i.mac);
      if (i.ipv4[0]) expect(addrs.map((a) => a.address)).toContain(i.ipv4[0]);
      if (i.ipv6[0]) expect(addrs.map((a) => a.address)).toContain(i.ipv6[0]);
    }
    const viaIp = /\bdev (\S+)/.exec(execFileSync('ip', ['-4', 'route', 'show', 'default'], { encoding: 'utf8' }))?.[1];
    if (viaIp && ifaces.some((i) => i.name === viaIp)) expect(ifaces[0]!.name).toBe(viaIp);

    const sensors = existsSync('/sys/class/hwmon') || existsSync('/sys/class/thermal/thermal_zone0');
    if (!sensors) expect(system.cpuTempC).toBeNull();
    else expect(system.cpuTempC === null || (system.cpuTempC > -100 && system.cpuTempC < 250)).toBe(true);
    if (existsSync('/proc/device-tree/model')) expect(system.board).toBe(readFileSync('/proc/device-tree/model', 'utf8').replace(/\0/g, '').trim());
    else if (existsSync('/.dockerenv')) expect(system.board).toBe('Docker Container');
  }, 60_000);
});

/** Non-loopback interfaces with an address, by name. */
function externalInterfaces(): Map<string, os.NetworkInterfaceInfo[]> {
  return new Map(Object.entries(os.networkInterfaces()).filter((e): e is [string, os.NetworkInterfaceInfo[]] => !!e[1]?.length && !e[1].some((x) => x.internal)));
}

/** Independent of the agent's parser: KEY=value and KEY="value" lines. */
function parseOsReleaseByHand(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/^([A-Z_]+)="?([^"\n]*)"?$/gm)].map((m) => [m[1], m[2]]));
}

/** Writes files under a fresh root: { 'proc/meminfo': '...' }. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(os.tmpdir(), 'devstreams-status-root-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

async function collect(root: string): Promise<{ s: DeviceSystem; log: ReturnType<typeof captureLog> }> {
  const log = captureLog();
  const c = new StatusCollector({ probeTimeoutMs: 5000, log: log.log, root });
  await c.refresh();
  return { s: c.snapshot(), log };
}

describe('status probes on boards this machine is not', () => {
  it('a Raspberry Pi: device-tree model, cpu-thermal zone, os-release with quotes, MemAvailable', async () => {
    const { s } = await collect(
      tree({
        'proc/device-tree/model': 'Raspberry Pi 4 Model B Rev 1.4\0',
        'sys/class/thermal/thermal_zone0/type': 'cpu-thermal\n',
        'sys/class/thermal/thermal_zone0/temp': '48312\n',
        'etc/os-release': 'PRETTY_NAME="Raspbian GNU/Linux 11 (bullseye)"\nNAME="Raspbian GNU/Linux"\nVERSION_ID="11"\n',
        'proc/meminfo': 'MemTotal:        3884360 kB\nMemFree:          181004 kB\nMemAvailable:    2992448 kB\n',
      }),
    );
    expect(s).toMatchObject({ board: 'Raspberry Pi 4 Model B Rev 1.4', cpuTempC: 48.3, os: 'Raspbian GNU/Linux 11', memAvailableBytes: 2992448 * 1024 });
  });

  it('x86: hwmon package temperature before cores and zones; DMI vendor and product, placeholders dropped', async () => {
    const { s } = await collect(
      tree({
        'sys/class/hwmon/hwmon0/name': 'acpitz\n',
        'sys/class/hwmon/hwmon0/temp1_input': '27800\n',
        'sys/class/hwmon/hwmon1/name': 'coretemp\n',
        'sys/class/hwmon/hwmon1/temp1_label': 'Package id 0\n',
        'sys/class/hwmon/hwmon1/temp1_input': '61000\n',
        'sys/class/hwmon/hwmon1/temp2_label': 'Core 0\n',
        'sys/class/hwmon/hwmon1/temp2_input': '58000\n',
        'sys/class/thermal/thermal_zone0/type': 'x86_pkg_temp\n',
        'sys/class/thermal/thermal_zone0/temp': '12000\n',
        'sys/devices/virtual/dmi/id/sys_vendor': 'To be filled by O.E.M.\n',
        'sys/devices/virtual/dmi/id/product_name': 'NUC7i5BNH\n',
        'usr/lib/os-release': 'NAME=Ubuntu\nVERSION_ID=24.04\n',
      }),
    );
    expect(s).toMatchObject({ cpuTempC: 61, board: 'NUC7i5BNH', os: 'Ubuntu 24.04' });
    const amd = await collect(
      tree({
        'sys/class/hwmon/hwmon2/temp1_label': 'Tctl\n',
        'sys/class/hwmon/hwmon2/temp1_input': '70125\n',
        'sys/class/hwmon/hwmon2/temp3_label': 'Tccd1\n',
        'sys/class/hwmon/hwmon2/temp3_input': '66000\n',
        'sys/devices/virtual/dmi/id/sys_vendor': 'LENOVO\n',
        'sys/devices/virtual/dmi/id/product_name': '20XW0026GE\n',
      }),
    );
    expect(amd.s).toMatchObject({ cpuTempC: 70.1, board: 'LENOVO 20XW0026GE' });
    const cores = await collect(tree({ 'sys/class/hwmon/hwmon0/temp2_label': 'Core 0', 'sys/class/hwmon/hwmon0/temp2_input': '50000', 'sys/class/hwmon/hwmon0/temp3_label': 'Core 1', 'sys/class/hwmon/hwmon0/temp3_input': '53000' }));
    expect(cores.s.cpuTempC).toBe(51.5);
  });

  it('nothing to read: sensors and board null, os from os.type(), memory null with one info line', async () => {
    const { s, log } = await collect(tree({}));
    expect(s).toMatchObject({ cpuTempC: null, board: null, os: os.type(), memAvailableBytes: null, kernel: os.release() });
    const failed = log.lines.filter((l) => l.msg === 'status probe failed; its field stays empty');
    expect(failed.map((l) => l.probe)).toEqual(['memory']);
    expect(failed[0]!.level).toBe(30);
  });

  it('the default route: destination and mask 0, route up, lowest metric', () => {
    const table = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0',
      'eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0',
      'usb0\t00000000\t0100A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0',
      'eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    ].join('\n');
    expect(defaultRouteInterface(table)).toBe('eth0');
    expect(defaultRouteInterface(table.split('\n').slice(0, 1).join('\n'))).toBeNull();
    expect(parseOsRelease('NAME="A \\"B\\""\n# c\nVERSION_ID=\'1.2\'\nbad line\n')).toEqual({ NAME: 'A "B"', VERSION_ID: '1.2' });
  });
});
