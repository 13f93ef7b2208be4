import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MALLOC_TRIM_ADDON, SdNotifier, loadMallocTrimFrom, silentLogger, type SdNotifySend } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/index.js';
import { bundleFixture } from '../helpers/bundled-child.js';
import { CliProcess, ROOT, freePort, runCli } from '../helpers/proc.js';
import { NotifyListener, type NotifyMessage } from './notify-listener.js';

/** sd_notify through the native helper or systemd-notify, against a stand-in NOTIFY_SOCKET listener. */

const listeners: NotifyListener[] = [];
const procs: CliProcess[] = [];
const dirs: string[] = [];
async function listener(opts: { abstract?: boolean } = {}): Promise<NotifyListener> {
  const l = await new NotifyListener(opts).start();
  listeners.push(l);
  return l;
}
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
  for (const l of listeners.splice(0)) await l.stop();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const gaps = (ms: NotifyMessage[]): number[] => ms.slice(1).map((m, i) => m.at - ms[i]!.at);

describe("sd_notify through the native helper (native/malloc-trim.c notify)", () => {
  // The development build's helper (scripts/build.mjs builds it).
  const load = loadMallocTrimFrom(join(ROOT, 'dist/native', MALLOC_TRIM_ADDON));
  const notify = load.notify as SdNotifySend;

  it('sends one datagram from this process, to a socket file or an abstract socket', async () => {
    expect(load.reason).toBeUndefined();
    for (const abstract of [false, true]) {
      const l = await listener({ abstract });
      expect(notify(l.path, 'READY=1\nSTATUS=up and running')).toBe(0);
      const m = await l.waitFor((x) => x.fields.READY === '1', `READY=1 (${l.path})`, 5000);
      expect(m.fields.STATUS).toBe('up and running');
      expect(m.pid).toBe(process.pid);
    }
  });

  it('refuses what it cannot send with an errno, and sends nothing', async () => {
    const l = await listener();
    expect(notify('relative/path', 'READY=1')).toBe(22); // EINVAL: not a path or '@name'
    expect(notify(join(l.dir, 'nobody-listens'), 'READY=1')).toBe(2); // ENOENT
    expect(notify(l.path, `STATUS=${'x'.repeat(5000)}`)).toBe(22); // EINVAL: over 4 KiB
    expect(notify(l.path, 'WATCHDOG=1')).toBe(0);
    await l.waitFor((x) => x.fields.WATCHDOG === '1', 'WATCHDOG=1', 5000);
    expect(l.messages.map((m) => m.fields)).toEqual([{ WATCHDOG: '1' }]);
  });

  it('SdNotifier sends through it: READY=1 and STOPPING=1 from its own process, no helper program', async () => {
    const l = await listener();
    const n = new SdNotifier({ env: { notifySocket: l.path }, log: silentLogger, status: () => 'fine', send: notify, command: '/nonexistent/systemd-notify' });
    n.ready();
    const ready = await l.waitFor((m) => m.fields.READY === '1', 'READY=1', 5000);
    expect(ready).toMatchObject({ fields: { READY: '1', STATUS: 'fine' }, pid: process.pid });
    await n.stopping();
    const stop = await l.waitFor((m) => m.fields.STOPPING === '1', 'STOPPING=1', 5000);
    expect(stop.pid).toBe(process.pid);
    expect(l.barriers).toBe(0);
  });

  it('SdNotifier without the helper (send: null) hands each message to the command', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-notify-'));
    dirs.push(dir);
    const args = join(dir, 'args');
    const command = join(dir, 'notify.sh');
    writeFileSync(command, `#!/bin/sh\nprintf '%s\\n' "$@" >> ${args}\n`, { mode: 0o755 });
    const l = await listener();
    const n = new SdNotifier({ env: { notifySocket: l.path }, log: silentLogger, status: () => 'fine', send: null, command });
    n.ready();
    await n.settled();
    await n.stopping();
    expect(readFileSync(args, 'utf8').trim().split('\n')).toEqual(['READY=1', 'STATUS=fine', 'READY=1', 'STOPPING=1', 'STATUS=stopping']);
    expect(l.messages).toEqual([]);
  });
});

describe('SdNotifier', () => {
  it('does nothing without NOTIFY_SOCKET', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-notify-'));
    dirs.push(dir);
    const marker = join(dir, 'ran');
    // A "systemd-notify" that leaves a trace if it is ever run.
    const n = new SdNotifier({ env: { watchdogUsec: '100000' }, log: silentLogger, status: () => 'x', command: `/bin/sh -c "touch ${marker}"` });
    expect(n.enabled).toBe(false);
    expect(n.pingIntervalMs).toBe(0);
    n.ready();
    await n.stopping();
    n.stop();
    expect(existsSync(marker)).toBe(false);
  });

  it('pings only for the process WATCHDOG_PID names, and only with WATCHDOG_USEC', () => {
    const make = (env: Record<string, string>): SdNotifier =>
      new SdNotifier({ env: { notifySocket: '/nonexistent', ...env }, log: silentLogger, status: () => '' });
    expect(make({ watchdogUsec: '10000000' }).pingIntervalMs).toBe(5000);
    expect(make({ watchdogUsec: '10000000', watchdogPid: String(process.pid) }).pingIntervalMs).toBe(5000);
    expect(make({ watchdogUsec: '10000000', watchdogPid: String(process.pid + 1) }).pingIntervalMs).toBe(0);
    expect(make({}).pingIntervalMs).toBe(0);
    expect(make({ watchdogUsec: 'soon' }).pingIntervalMs).toBe(0);
  });

  it('withholds WATCHDOG while the event loop is blocked and resumes after', async () => {
    // No native helper beside the bundle: this child notifies through systemd-notify.
    const bundle = await bundleFixture(join(ROOT, 'test/systemd/fixtures/notifier-child.ts'));
    dirs.push(dirname(bundle));
    const l = await listener();
    // WATCHDOG_USEC 0.4 s: a ping every 200 ms, the loop checked as often, withheld above 100 ms late.
    const child = spawn(process.execPath, [bundle], {
      env: { ...process.env, NOTIFY_SOCKET: l.path, WATCHDOG_USEC: '400000' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const out: string[] = [];
    const seen: Array<{ line: string; at: number }> = [];
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        out.push(line);
        seen.push({ line, at: performance.now() });
      }
    });
    const lineAt = async (pred: (line: string) => boolean, timeoutMs = 5000): Promise<number> => {
      const signal = AbortSignal.timeout(timeoutMs);
      for (;;) {
        const hit = seen.find((s) => pred(s.line));
        if (hit) return hit.at;
        try {
          await once(child.stdout, 'data', { signal });
        } catch {
          throw new Error(`no such line in:\n${out.join('\n')}`);
        }
      }
    };
    try {
      const ready = await l.waitFor((m) => m.fields.READY === '1', 'READY=1', 5000);
      expect(ready.fields.WATCHDOG).toBe('1');
      await l.waitFor((m) => m.fields.WATCHDOG === '1', 'a third WATCHDOG', 5000, l.with('WATCHDOG').length + 1);
      const before = l.with('WATCHDOG').length;

      child.stdin.write('block 1200\n');
      const blockedAt = await lineAt((s) => s === 'blocking');
      const unblockedAt = await lineAt((s) => s === 'unblocked');
      await lineAt((s) => s.includes('watchdog ping withheld'));
      const withheld = JSON.parse(out.find((s) => s.includes('watchdog ping withheld'))!) as { loopDelayMs: number };
      expect(withheld.loopDelayMs).toBeGreaterThan(1000);

      // Pings resume, but not at once: the check right after the block withholds its ping, the next pings.
      const next = await l.waitFor((m) => m.fields.WATCHDOG === '1' && m.at > unblockedAt, 'WATCHDOG after the block', 5000, before);
      expect(next.at - unblockedAt).toBeGreaterThan(150);
      // No ping was sent while the loop was blocked (one already on its way may land just after it began).
      const during = l.with('WATCHDOG').filter((m) => m.at > blockedAt + 100 && m.at < unblockedAt);
      expect(during).toEqual([]);
      await l.waitFor((m) => m.fields.WATCHDOG === '1', 'a second WATCHDOG after the block', 5000, l.messages.indexOf(next) + 1);

      child.stdin.end();
      await l.waitFor((m) => m.fields.STOPPING === '1', 'STOPPING=1', 5000);
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code).toBe(0);
      // No native helper next to this bundle: the messages came through systemd-notify.
      expect(l.barriers).toBeGreaterThan(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('the daemons under a stand-in systemd', () => {
  let dir: string;
  let port: number;
  let token: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-notify-'));
    dirs.push(dir);
    port = await freePort();
    for (const args of [
      ['hub', 'init', '--dir', dir, '--listen', `127.0.0.1:${port}`],
      ['hub', 'add-device', 'dev1', '--config', join(dir, 'hub.yaml'), '--allow', 'echo'],
    ]) {
      const r = await runCli(args);
      expect(r.code, r.stderr).toBe(0);
    }
    token = readFileSync(join(dir, 'service.token'), 'utf8');
  });

  it('hub and agent: READY, STATUS with devices and streams, WATCHDOG cadence, STOPPING', async () => {
    const hubL = await listener();
    const agentL = await listener();
    // WATCHDOG_USEC 2 s: a ping every second.
    const hub = new CliProcess(['hub', '--config', join(dir, 'hub.yaml')], { NOTIFY_SOCKET: hubL.path, WATCHDOG_USEC: '2000000' });
    procs.push(hub);
    const hubReady = await hubL.waitFor((m) => m.fields.READY === '1', 'READY=1 from the hub');
    // Through the native helper, from the daemon itself (no systemd-notify: checked at the end).
    expect(hubReady.pid).toBe(hub.child.pid);
    expect(hub.logs('hub listening')).toHaveLength(1); // READY comes once the hub listens
    expect(hubReady.fields.STATUS).toBe('0 devices online; 0 streams open');

    const agent = new CliProcess(['agent', '--config', join(dir, 'devices', 'dev1.yaml')], {
      NOTIFY_SOCKET: agentL.path,
      WATCHDOG_USEC: '2000000',
    });
    procs.push(agent);
    const agentReady = await agentL.waitFor((m) => m.fields.READY === '1', 'READY=1 from the agent');
    expect(agentReady.pid).toBe(agent.child.pid);
    expect(agentReady.fields.STATUS).toMatch(/^control channel (connecting|connected); 0 streams open$/);
    await agentL.waitFor((m) => m.fields.STATUS === 'control channel connected; 0 streams open', 'STATUS connected');
    await hubL.waitFor((m) => m.fields.STATUS === '1 device online; 0 streams open', 'STATUS with the device online');

    const client = new DevstreamsClient({ hub: `https://localhost:${port}`, token, ca: readFileSync(join(dir, 'tls', 'ca.crt')) });
    try {
      const stream = await client.openStream('dev1', 'echo');
      await agentL.waitFor((m) => m.fields.STATUS === 'control channel connected; 1 streams open', 'STATUS with a stream');
      await hubL.waitFor((m) => m.fields.STATUS === '1 device online; 1 stream open', 'hub STATUS with a stream');
      stream.destroy();
      await agentL.waitFor((m) => m.fields.STATUS === 'control channel connected; 0 streams open', 'STATUS after the stream', 15_000, agentL.messages.length);
    } finally {
      client.close();
    }

    // Cadence: WATCHDOG about every second (systemd would act after 2 s without one).
    const from = agentL.with('WATCHDOG').length;
    while (agentL.with('WATCHDOG').length < from + 4) {
      await agentL.waitFor((m) => m.fields.WATCHDOG === '1', 'more WATCHDOGs', 5000, agentL.messages.length);
    }
    for (const g of gaps(agentL.with('WATCHDOG').slice(from - 1))) {
      expect(g).toBeGreaterThan(500);
      expect(g).toBeLessThan(2000);
    }
    expect(hubL.with('WATCHDOG').length).toBeGreaterThanOrEqual(2);

    // STOPPING=1 on SIGTERM, then a clean exit.
    expect(await agent.stop()).toBe(0);
    expect(agentL.messages.at(-1)!.fields).toMatchObject({ STOPPING: '1' });
    expect(await hub.stop()).toBe(0);
    expect(hubL.messages.at(-1)!.fields).toMatchObject({ STOPPING: '1' });
    // Every message from the daemons themselves: no systemd-notify, whose barrier follows each one.
    expect([hubL.barriers, agentL.barriers]).toEqual([0, 0]);
    expect(new Set(agentL.messages.map((m) => m.pid))).toEqual(new Set([agent.child.pid]));
    // READY=1 rides along with every message (a repeat is harmless; one lost to a race is not).
    expect(agentL.messages.every((m) => m.fields.READY === '1')).toBe(true);
  });
});
