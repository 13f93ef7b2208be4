import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runAgentCli } from '../../agent/cli.js';
import { ConfigError } from '../../protocol/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub } from './fake-hub.js';

let tls: TestTls;
let hub: FakeHub;
let dir: string;

beforeAll(async () => {
  tls = makeTestTls();
  hub = new FakeHub(tls);
  await hub.start();
  dir = mkdtempSync(join(tmpdir(), 'devstreams-agent-cli-'));
  writeFileSync(join(dir, 'cli-dev.key'), hub.addDevice('cli-dev'));
  writeFileSync(join(dir, 'ca.pem'), tls.ca);
  writeFileSync(
    join(dir, 'agent.yaml'),
    `hub:\n  url: ${hub.url}\n  deviceId: cli-dev\n  keyFile: cli-dev.key\n  ca: ca.pem\nallow:\n  - { name: echo, builtin: echo }\n`,
  );
});

afterAll(async () => {
  await hub?.stop();
});

describe('devstreams agent', () => {
  it('runs until told to stop, logs JSON with "agent connected", and exits 0', async () => {
    const lines: Record<string, unknown>[] = [];
    const stop = new AbortController();
    let onConnected!: () => void;
    const connected = new Promise<void>((resolve) => (onConnected = resolve));
    const destination = {
      write(s: string) {
        const line = JSON.parse(s) as Record<string, unknown>;
        lines.push(line);
        if (line.msg === 'agent connected') onConnected();
      },
    };
    const exited = runAgentCli(['--config', join(dir, 'agent.yaml')], { signal: stop.signal, logDestination: destination, totalMemoryBytes: 2 ** 30 });
    await connected;
    expect(lines.find((l) => l.msg === 'agent connected')).toMatchObject({ deviceId: 'cli-dev', level: 30 });
    // runtime.gc: auto on a 1 GiB board runs memory mode (agent/gc-mode.ts)
    expect(lines.find((l) => l.msg === 'garbage collection mode')).toMatchObject({ gc: 'memory', setting: 'auto', memoryMB: 1024 });
    stop.abort();
    expect(await exited).toBe(0);
    expect(lines.at(-1)).toMatchObject({ msg: 'agent stopped' });
  });

  it('warns, naming the file and its mode, when a config holding hub.key is readable by others; not when it is 0600', async () => {
    const key = hub.addDevice('cli-inline');
    const file = join(dir, 'inline.yaml');
    const run = async (mode: number): Promise<Record<string, unknown>[]> => {
      writeFileSync(file, `hub:\n  url: ${hub.url}\n  deviceId: cli-inline\n  key: "${key}"\n  ca: ca.pem\nallow: []\n`);
      chmodSync(file, mode);
      const lines: Record<string, unknown>[] = [];
      const stop = new AbortController();
      let onConnected!: () => void;
      const connected = new Promise<void>((resolve) => (onConnected = resolve));
      const exited = runAgentCli(['--config', file], {
        signal: stop.signal,
        totalMemoryBytes: 2 ** 30,
        logDestination: { write: (s: string) => { const l = JSON.parse(s) as Record<string, unknown>; lines.push(l); if (l.msg === 'agent connected') onConnected(); } },
      });
      await connected;
      stop.abort();
      expect(await exited).toBe(0);
      expect(JSON.stringify(lines)).not.toContain(key);
      return lines.filter((l) => l.level === 40);
    };
    expect(await run(0o644)).toEqual([
      expect.objectContaining({
        config: file,
        msg: `config file ${file} holds the device key (hub.key) and has mode 0644: readable or writable by its group and other users; run chmod 600 ${file}, or move the key to a file of its own (hub.keyFile, mode 0600)`,
      }),
    ]);
    expect(await run(0o640)).toEqual([expect.objectContaining({ msg: expect.stringContaining('has mode 0640: readable or writable by its group;') })]);
    expect(await run(0o600)).toEqual([]);
  });

  it('throws the ConfigError to the caller for a bad config', async () => {
    writeFileSync(join(dir, 'bad.yaml'), 'hub: {}\nallow: [{ name: x, port: 0 }]\n');
    await expect(runAgentCli(['--config', join(dir, 'bad.yaml')])).rejects.toThrow(ConfigError);
    await expect(runAgentCli(['--config', join(dir, 'bad.yaml')])).rejects.toThrow(/bad\.yaml: .*allow\.0\.port: Too small/);
  });

  it('--check loads the file as a start would and says ok, connecting to nothing; a bad file throws as a start would', async () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(await runAgentCli(['--config', join(dir, 'agent.yaml'), '--check'])).toBe(0);
      expect(out.mock.calls.map(([t]) => String(t))).toEqual([`${join(dir, 'agent.yaml')}: ok\n`]);
    } finally {
      out.mockRestore();
    }
    // A missing key file is found too (the key is read at load, as a reload reads it).
    writeFileSync(join(dir, 'nokey.yaml'), `hub:\n  url: ${hub.url}\n  deviceId: cli-dev\n  keyFile: missing.key\nallow:\n  - { name: echo, builtin: echo }\n`);
    await expect(runAgentCli(['--config', join(dir, 'nokey.yaml'), '--check'])).rejects.toThrow(/missing\.key/);
    await expect(runAgentCli(['--config', join(dir, 'bad.yaml'), '--check'])).rejects.toThrow(/allow\.0\.port: Too small/);
  });

  it('--reload (systemd ExecReload) signals $MAINPID only when the file is good', async () => {
    const target = spawn('sleep', ['30']);
    await once(target, 'spawn');
    const exited = once(target, 'exit');
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const env = { MAINPID: String(target.pid) };
      await expect(runAgentCli(['--config', join(dir, 'bad.yaml'), '--reload'], { env })).rejects.toThrow(/allow\.0\.port/);
      expect(target.exitCode ?? target.signalCode).toBeNull(); // not signalled
      expect(await runAgentCli(['--config', join(dir, 'agent.yaml'), '--reload'], { env: {} })).toBe(2);
      expect(String(err.mock.calls[0]![0])).toMatch(/\$MAINPID is not set/);
      expect(await runAgentCli(['--config', join(dir, 'agent.yaml'), '--reload'], { env })).toBe(0);
      expect(await exited).toEqual([null, 'SIGHUP']);
    } finally {
      out.mockRestore();
      err.mockRestore();
      target.kill();
    }
  });

  it('answers usage errors with one line on stderr and exit status 2', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await runAgentCli([])).toBe(2);
      expect(await runAgentCli(['--config', 'a', '--bogus'])).toBe(2);
      expect(await runAgentCli(['extra'])).toBe(2);
      for (const [text] of err.mock.calls) expect(String(text)).toMatch(/^devstreams: agent: .*usage: devstreams agent --config FILE \[--check \| --reload\]\n$/);
      expect(String(err.mock.calls[1]![0])).toMatch(/^devstreams: agent: unknown option --bogus; /);
      expect(String(err.mock.calls[2]![0])).toMatch(/^devstreams: agent: unexpected argument extra; /);
    } finally {
      err.mockRestore();
    }
  });
});
