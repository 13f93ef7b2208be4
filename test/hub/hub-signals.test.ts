import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SIGHUP_WARNING, hubStatusText } from '../../hub/cli.js';
import { initHub } from '../../hub/init.js';
import { CliProcess } from '../helpers/proc.js';
import { tempDir } from './helpers.js';

/** The hub as its own process (this checkout's dist build: node scripts/build.mjs). */
const cleanup: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('the hub process and signals', () => {
  it('SIGHUP does not end it: one warning that hub.yaml needs a restart; SIGTERM still stops it cleanly', async () => {
    const dir = tempDir();
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    initHub({ dir, listen: '127.0.0.1:0' });
    const hub = new CliProcess(['hub', '--config', join(dir, 'hub.yaml')]);
    cleanup.push(() => hub.stop('SIGKILL'));
    await hub.waitForLog('hub listening');

    hub.child.kill('SIGHUP');
    const warning = await hub.waitForLog(SIGHUP_WARNING);
    expect(warning.level).toBe(40);
    expect(SIGHUP_WARNING).toMatch(/does not re-read hub\.yaml.*restart/);
    // Still serving: a second SIGHUP is answered the same way, then SIGTERM stops it with exit 0.
    hub.child.kill('SIGHUP');
    await hub.waitForLine(() => hub.logs(SIGHUP_WARNING).length === 2);
    expect(await hub.stop('SIGTERM')).toBe(0);
    expect(hub.logs('hub stopped')).toHaveLength(1);
  });
});

describe("the hub's systemd status text", () => {
  it('says device/stream for one, devices/streams otherwise', () => {
    expect(hubStatusText(0, 0)).toBe('0 devices online; 0 streams open');
    expect(hubStatusText(1, 1)).toBe('1 device online; 1 stream open');
    expect(hubStatusText(12, 3)).toBe('12 devices online; 3 streams open');
  });
});
