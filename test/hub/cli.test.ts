import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../protocol/index.js';
import { TOKEN_ACTIONS } from '../../hub/admin-cli.js';
import { HUB_SUBCOMMANDS, runHubCli } from '../../hub/cli.js';
import { USAGE } from '../../bin/usage.js';
import type { Hub } from '../../hub/hub.js';
import { runningPublicUrlWarning } from '../../hub/public-url.js';
import { jsonLinesDestination, tempDir } from './helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function newDir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}

function output(): { out: (s: string) => void; text: () => string } {
  let text = '';
  return { out: (s) => (text += s), text: () => text };
}

describe('devstreams hub (CLI)', () => {
  it('init prints the export lines but never the token, and refuses to run twice', async () => {
    const dir = join(newDir(), 'state');
    const o = output();
    expect(await runHubCli(['init', '--dir', dir, '--listen', '127.0.0.1:9561'], { out: o.out })).toBe(0);
    const token = readFileSync(join(dir, 'service.token'), 'utf8');
    expect(o.text()).toContain('export DEVSTREAMS_HUB=https://localhost:9561\n');
    expect(o.text()).toContain(`export DEVSTREAMS_TOKEN="$(cat ${join(dir, 'service.token')})"`);
    expect(o.text()).toContain(`export DEVSTREAMS_CA=${join(dir, 'tls', 'ca.crt')}`);
    expect(o.text()).not.toContain(token);
    await expect(runHubCli(['init', '--dir', dir], { out: o.out })).rejects.toThrow(ConfigError);
  });

  it('add-device writes the device files; a usage error returns 2', async () => {
    const dir = newDir();
    const o = output();
    await runHubCli(['init', '--dir', dir, '--listen', '127.0.0.1:9562'], { out: o.out });
    const config = join(dir, 'hub.yaml');
    expect(await runHubCli(['add-device', 'pi-1', '--config', config, '--allow', 'ssh=22', '--allow', 'echo'], { out: o.out })).toBe(0);
    expect(o.text()).toContain(join(dir, 'devices', 'pi-1.yaml'));
    const yaml = readFileSync(join(dir, 'devices', 'pi-1.yaml'), 'utf8');
    expect(yaml).toContain('url: "wss://localhost:9562/mqtt"');
    expect(yaml).toContain('{ name: "ssh", port: 22 }');
    expect(await runHubCli(['add-device', '--config', config], { out: o.out })).toBe(2);
    const e = output();
    expect(await runHubCli(['add-device', 'x', '--bogus'], { out: o.out, err: e.out })).toBe(2);
    expect(e.text()).toMatch(/^devstreams: hub: unknown option --bogus\b/);
  });

  it('init --public-url writes publicUrl and prints it as the hub to use; a bad one is refused, nothing written', async () => {
    const dir = join(newDir(), 'state');
    const o = output();
    const e = output();
    expect(await runHubCli(['init', '--dir', dir, '--listen', '0.0.0.0:9563', '--public-url', 'https://hub.example.com:9563'], { out: o.out, err: e.out })).toBe(0);
    expect(readFileSync(join(dir, 'hub.yaml'), 'utf8')).toContain('\npublicUrl: "https://hub.example.com:9563"\n');
    expect(o.text()).toContain('export DEVSTREAMS_HUB=https://hub.example.com:9563\n');
    expect(e.text()).toBe('');
    expect(await runHubCli(['add-device', 'pi', '--config', join(dir, 'hub.yaml')], { out: () => {} })).toBe(0);
    expect(readFileSync(join(dir, 'devices/pi.yaml'), 'utf8')).toContain('url: "wss://hub.example.com:9563/mqtt"');

    const bad = join(newDir(), 'bad');
    await expect(runHubCli(['init', '--dir', bad, '--listen', '0.0.0.0:9563', '--public-url', 'http://hub.example.com'], { out: () => {} })).rejects.toThrow(
      /^--public-url: "http:\/\/hub\.example\.com" must be an https:\/\/ URL/,
    );
    expect(existsSync(bad)).toBe(false);
  });

  it('init warns on stderr when it listens on every interface without --public-url', async () => {
    const dir = newDir();
    const o = output();
    const e = output();
    expect(await runHubCli(['init', '--dir', dir, '--listen', '0.0.0.0:9564'], { out: o.out, err: e.out })).toBe(0);
    expect(e.text()).toMatch(/^devstreams: hub init: warning: --listen 0\.0\.0\.0:9564 .*publicUrl.*\n$/);
    expect(o.text()).not.toContain('warning');
  });

  it('add-device refuses a hub on every interface without publicUrl, and writes no device file', async () => {
    const dir = newDir();
    await runHubCli(['init', '--dir', dir, '--listen', '0.0.0.0:18600'], { out: () => {}, err: () => {} });
    const config = join(dir, 'hub.yaml');
    const err = await runHubCli(['add-device', 'x', '--config', config], { out: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(new RegExp(`^${config}: publicUrl: required when listen \\(0\\.0\\.0\\.0:18600\\) is not a loopback address`));
    expect((err as Error).message).toContain('devstreams hub init --public-url');
    expect(existsSync(join(dir, 'devices'))).toBe(false);
  });

  it('add-device refuses a port-0 hub without publicUrl, naming the field', async () => {
    const dir = newDir();
    await runHubCli(['init', '--dir', dir, '--listen', '127.0.0.1:0'], { out: () => {} });
    await expect(runHubCli(['add-device', 'd', '--config', join(dir, 'hub.yaml')], { out: () => {} })).rejects.toThrow(
      `${join(dir, 'hub.yaml')}: publicUrl: required when listen uses port 0`,
    );
  });

  it('runs the hub until told to stop, announcing the URL with the real port', async () => {
    const dir = newDir();
    await runHubCli(['init', '--dir', dir], { out: () => {} });
    const { destination: logDestination, lines } = jsonLinesDestination();
    const abort = new AbortController();
    let started: Hub | undefined;
    const done = runHubCli(['--config', join(dir, 'hub.yaml'), '--listen', '127.0.0.1:0'], {
      signal: abort.signal,
      logDestination: logDestination as never,
      onStarted: (hub) => {
        started = hub;
        abort.abort();
      },
    });
    expect(await done).toBe(0);
    const port = started!.server.port;
    expect(port).toBeGreaterThan(0);
    expect(lines.find((l) => l.msg === 'hub listening')).toMatchObject({ url: `https://localhost:${port}` });
    expect(lines.some((l) => l.msg === 'hub stopped')).toBe(true);
  });

  it('a bad config throws one line naming the file and the field', async () => {
    const dir = newDir();
    await runHubCli(['init', '--dir', dir], { out: () => {} });
    const file = join(dir, 'hub.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('handshake:', 'handshak:'));
    const err = await runHubCli(['--config', file]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(new RegExp(`^${file}: .*handshak`));
    expect((err as Error).message).not.toContain('\n');
  });
});

describe('devstreams hub without a config', () => {
  it('says how to make one', async () => {
    const dir = newDir();
    await expect(runHubCli(['--config', join(dir, 'nope.yaml')])).rejects.toThrow(/nope\.yaml: no such file; create one with `devstreams hub init`/);
  });

  it('every command that reads hub.yaml names the missing file and says to check --config', async () => {
    const missing = join(newDir(), 'nope.yaml');
    for (const args of [['add-device', 'pi'], ['token', 'list'], ['token', 'revoke', 'ci'], ['rotate-key', 'pi'], ['disable-device', 'pi'], ['remove-device', 'pi']]) {
      const err = await runHubCli([...args, '--config', missing], { out: () => {}, err: () => {} }).catch((e: unknown) => e);
      expect(err, args.join(' ')).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(
        `${missing}: no such file; create one with \`devstreams hub init\` (with --dir DIR it writes DIR/hub.yaml) or check the --config path`,
      );
    }
  });
});

describe('devstreams --help', () => {
  it('lists every hub subcommand the hub CLI dispatches, each token action, and their flags', () => {
    expect(HUB_SUBCOMMANDS).toContain('init');
    for (const sub of HUB_SUBCOMMANDS) {
      if (sub === 'token') for (const action of TOKEN_ACTIONS) expect(USAGE).toContain(`  devstreams hub token ${action}`);
      else expect(USAGE, sub).toMatch(new RegExp(`^  devstreams hub ${sub}\\b`, 'm'));
    }
    for (const flag of ['--public-url', '--allow NAME=[HOST:]PORT', '--slot primary|secondary', '--devices', '--services', '--config']) expect(USAGE).toContain(flag);
  });
});

describe('a running hub without publicUrl', () => {
  it('warns only when it listens where other machines reach it, at a fixed port', () => {
    expect(runningPublicUrlWarning({ listen: '0.0.0.0:443', publicUrl: undefined })).toMatch(/^listen 0\.0\.0\.0:443 is reachable from other machines but hub\.yaml has no publicUrl: .*localhost:443/);
    expect(runningPublicUrlWarning({ listen: '192.168.1.5:8443', publicUrl: undefined })).not.toBeNull();
    for (const listen of ['127.0.0.1:8443', 'localhost:8443', '[::1]:8443', '0.0.0.0:0']) expect(runningPublicUrlWarning({ listen, publicUrl: undefined }), listen).toBeNull();
    expect(runningPublicUrlWarning({ listen: '0.0.0.0:443', publicUrl: 'https://hub.example.com' })).toBeNull();
  });
});
