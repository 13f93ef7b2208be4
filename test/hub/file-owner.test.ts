import { chownSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runHubCli } from '../../hub/cli.js';
import { initHub } from '../../hub/init.js';
import { tempDir } from './helpers.js';

/**
 * An admin who runs `devstreams hub add-device` (or any admin command) as root on a hub folder that
 * belongs to the hub's own user (systemd: devstreams) must leave files that user can read, as if
 * `runuser -u devstreams` had been used. The tests run as root; 65534 (nobody) plays the hub's user.
 */
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const HUB_UID = 65534;
const HUB_GID = 65534;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  if (!statSync(path).isDirectory()) return;
  for (const e of readdirSync(path)) chownTree(join(path, e), uid, gid);
}

const owner = (f: string): string => {
  const st = statSync(f);
  return `${st.uid}:${st.gid}`;
};

const quiet = { out: () => {}, err: () => {} };

describe.skipIf(!isRoot)('admin commands run as root on a hub folder of another user', () => {
  it('add-device, rotate-key, disable-device and token create keep the folder owner on every file and folder they write', async () => {
    const dir = tempDir();
    dirs.push(dir);
    initHub({ dir, listen: '127.0.0.1:9571' });
    chownTree(dir, HUB_UID, HUB_GID);
    const config = join(dir, 'hub.yaml');

    expect(await runHubCli(['add-device', 'pi-two', '--allow', 'echo', '--config', config], quiet)).toBe(0);
    expect(await runHubCli(['rotate-key', 'pi-two', '--config', config], quiet)).toBe(0);
    expect(await runHubCli(['disable-device', 'pi-two', '--config', config], quiet)).toBe(0);
    expect(await runHubCli(['token', 'create', 'ci', '--config', config], quiet)).toBe(0);

    const want = `${HUB_UID}:${HUB_GID}`;
    for (const f of ['registry.json', 'tokens.json', 'devices', 'devices/pi-two.key', 'devices/pi-two.yaml', 'devices/ca.pem']) {
      expect(owner(join(dir, f)), f).toBe(want);
    }
    expect(statSync(join(dir, 'registry.json')).mode & 0o777).toBe(0o600);
    // No temporary file left behind, whoever owns it.
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a registry left owned by root by an earlier root run gets the folder owner back', async () => {
    const dir = tempDir();
    dirs.push(dir);
    initHub({ dir, listen: '127.0.0.1:9571' });
    chownTree(dir, HUB_UID, HUB_GID);
    chownSync(join(dir, 'registry.json'), 0, 0);
    expect(await runHubCli(['add-device', 'pi', '--config', join(dir, 'hub.yaml')], quiet)).toBe(0);
    expect(owner(join(dir, 'registry.json'))).toBe(`${HUB_UID}:${HUB_GID}`);
  });

  it('a hub folder that belongs to root stays root-owned', async () => {
    const dir = tempDir();
    dirs.push(dir);
    mkdirSync(join(dir, 'hub'));
    initHub({ dir: join(dir, 'hub'), listen: '127.0.0.1:9571' });
    expect(await runHubCli(['add-device', 'pi', '--config', join(dir, 'hub', 'hub.yaml')], quiet)).toBe(0);
    for (const f of ['registry.json', 'devices', 'devices/pi.key']) expect(owner(join(dir, 'hub', f)), f).toBe('0:0');
  });
});
