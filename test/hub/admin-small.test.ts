import { chmodSync, existsSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../protocol/index.js';
import { runHubCli } from '../../hub/cli.js';
import { initHub } from '../../hub/init.js';
import { DeviceRegistry } from '../../hub/registry.js';
import { ServiceTokens } from '../../hub/service-tokens.js';
import { runCli } from '../helpers/proc.js';
import { captureLogger, jsonLinesDestination, tempDir } from './helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function hub(listen = '127.0.0.1:9601'): { dir: string; config: string } {
  const dir = tempDir();
  dirs.push(dir);
  initHub({ dir, listen });
  return { dir, config: join(dir, 'hub.yaml') };
}
async function run(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runHubCli(args, { out: (t) => (out += t), err: () => {} });
  return { code, out };
}

describe('a state file deleted while the hub runs', () => {
  it('tokens.json: a warning that every token in it is revoked, and the count in the reload line', async () => {
    const { dir } = hub();
    const c = captureLogger();
    const tokens = new ServiceTokens({ file: join(dir, 'tokens.json'), legacy: [], log: c.log });
    await tokens.start();
    try {
      unlinkSync(join(dir, 'tokens.json'));
      expect(tokens.authenticate('x'.repeat(43))).toBeNull();
      const lines = c.lines();
      expect(lines.find((l) => l.level === 40)).toMatchObject({
        file: join(dir, 'tokens.json'),
        msg: expect.stringMatching(/^service tokens file missing: every token it held is revoked \(calls with them get 401\)/),
      });
      expect(lines.find((l) => l.msg === 'service tokens reloaded')).toMatchObject({ tokens: 0 });
    } finally {
      await tokens.stop();
    }
  });

  it('registry.json: a warning, and the device count in the reload line', async () => {
    const { dir } = hub();
    const c = captureLogger();
    const registry = new DeviceRegistry({ file: join(dir, 'registry.json'), log: c.log });
    await registry.start();
    try {
      unlinkSync(join(dir, 'registry.json'));
      expect(registry.ids()).toEqual([]);
      expect(c.lines().find((l) => l.level === 40)?.msg).toMatch(/^device registry file missing: every device is unknown/);
      expect(c.lines().find((l) => l.msg === 'device registry reloaded')).toMatchObject({ devices: 0 });
    } finally {
      await registry.stop();
    }
  });
});

describe('disable-device and enable-device', () => {
  it('say "already disabled" / "already enabled" when nothing changes', async () => {
    const { config } = hub();
    expect((await run(['add-device', 'pi', '--config', config])).code).toBe(0);
    expect((await run(['disable-device', 'pi', '--config', config])).out).toBe('device pi disabled: disconnected and refused until enable-device\n');
    expect(await run(['disable-device', 'pi', '--config', config])).toEqual({ code: 0, out: 'device pi is already disabled; nothing changed\n' });
    expect((await run(['enable-device', 'pi', '--config', config])).out).toBe('device pi enabled\n');
    expect(await run(['enable-device', 'pi', '--config', config])).toEqual({ code: 0, out: 'device pi is already enabled; nothing changed\n' });
  });
});

describe('hub init --dir', () => {
  it('a file, or a path through a file: says so, writes nothing', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const file = join(dir, 'hub.yaml');
    writeFileSync(file, 'x');
    for (const d of [file, join(file, 'sub')]) {
      const err = await runHubCli(['init', '--dir', d], { out: () => {}, err: () => {} }).catch((e: unknown) => e);
      expect(err, d).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(`--dir: ${file} is a file, not a folder`);
    }
  });

  it('a folder that cannot be made (under /proc) fails at once instead of spinning in a recursive mkdir', async () => {
    // A child process: the old code never returned (a synchronous loop the test could not time out).
    const r = await runCli(['hub', 'init', '--dir', '/proc/devstreams-nope/hub'], { timeoutMs: 15_000 });
    expect(r.stderr).toBe('devstreams: --dir: /proc/devstreams-nope cannot make this folder (ENOENT)\n');
    expect(r.code).toBe(2);
  });

  it('still makes missing parents', () => {
    const dir = tempDir();
    dirs.push(dir);
    initHub({ dir: join(dir, 'a', 'b'), listen: '127.0.0.1:9602' });
    expect(existsSync(join(dir, 'a', 'b', 'hub.yaml'))).toBe(true);
  });
});

describe('the hub warns at start about files with secrets others can read', () => {
  async function startLines(config: string): Promise<Record<string, unknown>[]> {
    const { destination: logDestination, lines } = jsonLinesDestination();
    const abort = new AbortController();
    expect(await runHubCli(['--config', config, '--listen', '127.0.0.1:0'], { signal: abort.signal, logDestination: logDestination as never, onStarted: () => abort.abort() })).toBe(0);
    return lines;
  }

  it('one warn line for each of registry.json, tokens.json, the TLS key and mqtt.passwordFile, naming the mode and chmod 600', async () => {
    const { dir, config } = hub();
    expect((await startLines(config)).filter((l) => l.level === 40 && String(l.msg).includes('chmod'))).toEqual([]);

    for (const f of ['registry.json', 'tokens.json', 'tls/hub.key']) chmodSync(join(dir, f), 0o644);
    chmodSync(join(dir, 'tls/ca.key'), 0o640); // not the hub's (hub.yaml does not name it)
    const warned = (await startLines(config)).filter((l) => l.level === 40 && String(l.msg).includes('chmod')).map((l) => l.msg);
    expect(warned).toEqual([
      `${join(dir, 'registry.json')} holds the device registry (signing keys) and has mode 0644: readable or writable by its group and other users; run chmod 600 ${join(dir, 'registry.json')}`,
      `${join(dir, 'tokens.json')} holds the service tokens and has mode 0644: readable or writable by its group and other users; run chmod 600 ${join(dir, 'tokens.json')}`,
      `${join(dir, 'tls/hub.key')} holds the TLS private key and has mode 0644: readable or writable by its group and other users; run chmod 600 ${join(dir, 'tls/hub.key')}`,
    ]);
  });

  it('mqtt.passwordFile and an inline mqtt.password in hub.yaml', async () => {
    const { secretFileWarnings } = await import('../../hub/secret-file-modes.js');
    const { loadHubConfig } = await import('../../hub/config.js');
    const { dir, config } = hub();
    writeFileSync(join(dir, 'broker.pw'), 'pw', { mode: 0o640 });
    const base = { url: 'mqtts://broker.example.com:8883', username: 'hub' };
    const withFile = { ...loadHubConfig(config).config, mqtt: { ...base, passwordFile: join(dir, 'broker.pw') } } as never;
    expect(secretFileWarnings(withFile, config)).toEqual([
      `${join(dir, 'broker.pw')} holds the broker password (mqtt.passwordFile) and has mode 0640: readable or writable by its group; run chmod 600 ${join(dir, 'broker.pw')}`,
    ]);
    chmodSync(config, 0o604);
    const inline = { ...loadHubConfig(config).config, mqtt: { ...base, password: 'pw' } } as never;
    expect(secretFileWarnings(inline, config)).toEqual([
      `${config} holds the broker password (mqtt.password) and has mode 0604: readable or writable by other users; run chmod 600 ${config}`,
    ]);
  });
});
