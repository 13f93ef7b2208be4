import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports.js';
import { CliProcess, ROOT, runCli } from '../helpers/proc.js';

/**
 * The README's first step, `npm start` (scripts/start.mjs, after the build): a hub and an agent in
 * a folder of their own, on a port of the user's choosing, and the printed lines work as printed.
 */
// (The quick start prints its port, so it cannot take port 0: test/helpers/ports.ts hands one out.)
describe('npm start (the quick start)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-quickstart-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs a hub and an agent in --dir on --port; the printed exports carry an echo; Ctrl-C stops both', async () => {
    const port = await freePort();
    const start = new CliProcess(['--port', String(port), '--dir', dir], {}, [process.execPath, join(ROOT, 'scripts/start.mjs')]);
    try {
      await start.waitForLine((l) => l.startsWith('devstreams is running'), 30_000);
      await start.waitForLine((l) => l.includes('ssh -o ProxyCommand='));
      const exported = (name: string): string => {
        const line = start.lines.find((l) => l.trim().startsWith(`export ${name}=`))!;
        return line.trim().slice(`export ${name}=`.length);
      };
      expect(exported('DEVSTREAMS_HUB')).toBe(`https://localhost:${port}`);
      expect(exported('DEVSTREAMS_CA')).toBe(join(dir, 'tls/ca.crt'));
      // The ProxyCommand runs in a shell of ssh's, which has no aliases: it must name the CLI in full.
      expect(start.lines.find((l) => l.includes('ProxyCommand='))).toContain(`${process.execPath} ${join(ROOT, 'dist/devstreams.mjs')} connect %h ssh`);
      const token = readFileSync(join(dir, 'service.token'), 'utf8').trim();
      const echo = await runCli(['echo', 'demo-device', '--bytes', '65536'], {
        env: { DEVSTREAMS_HUB: exported('DEVSTREAMS_HUB'), DEVSTREAMS_TOKEN: token, DEVSTREAMS_CA: exported('DEVSTREAMS_CA') },
      });
      expect([echo.code, echo.stdout]).toEqual([0, expect.stringMatching(/^echo ok: 65536 bytes/)]);
    } finally {
      start.child.kill('SIGINT');
      await start.exited;
    }
  });

  it('refuses a port that is not one, naming the flag', async () => {
    const start = new CliProcess(['--port', 'x', '--dir', dir], {}, [process.execPath, join(ROOT, 'scripts/start.mjs')]);
    expect(await start.exited).toBe(2);
    expect(start.lines[0]).toBe('devstreams: --port must be a port number from 1 to 65535 (got "x")');
  });
});
