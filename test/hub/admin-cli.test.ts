import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DevstreamsError } from '../../protocol/index.js';
import { TOKEN_ACTIONS } from '../../hub/admin-cli.js';
import { HUB_SUBCOMMANDS, runHubCli } from '../../hub/cli.js';
import { initHub } from '../../hub/init.js';
import { readRegistryFile } from '../../hub/registry.js';
import { tempDir } from './helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runHubCli(args, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

describe('devstreams hub SUBCOMMAND --help', () => {
  it('every subcommand of the dispatch table prints its own usage and exits 0, with --help and -h', async () => {
    expect(HUB_SUBCOMMANDS.length).toBeGreaterThan(5);
    for (const sub of HUB_SUBCOMMANDS) {
      for (const flag of ['--help', '-h']) {
        const r = await run([sub, flag]);
        expect(r.code, `${sub} ${flag}`).toBe(0);
        expect(r.err, `${sub} ${flag}`).toBe('');
        expect(r.out, `${sub} ${flag}`).toMatch(new RegExp(`^usage: devstreams hub ${sub}\\b`));
        // Its own usage, not the whole hub's: no other subcommand's line.
        for (const other of HUB_SUBCOMMANDS.filter((o) => o !== sub)) expect(r.out, `${sub} ${flag}`).not.toContain(`devstreams hub ${other} `);
      }
    }
    // Also after other arguments, as people type it.
    expect((await run(['rotate-key', 'pi', '--help'])).out).toMatch(/^usage: devstreams hub rotate-key ID .*--force/);
  });

  it('each token action has its own usage; token --help lists all of them', async () => {
    for (const action of TOKEN_ACTIONS) {
      const r = await run(['token', action, '--help']);
      expect(r.code, action).toBe(0);
      expect(r.out, action).toMatch(new RegExp(`^usage: devstreams hub token ${action}\\b`));
      for (const other of TOKEN_ACTIONS.filter((a) => a !== action)) expect(r.out, action).not.toContain(`hub token ${other}`);
    }
    const all = await run(['token', '--help']);
    for (const action of TOKEN_ACTIONS) expect(all.out).toContain(`devstreams hub token ${action}`);
  });
});

describe('devstreams hub rotate-key', () => {
  async function hubWithDevice(): Promise<{ config: string; keyFile: string; registry: string }> {
    const dir = tempDir();
    dirs.push(dir);
    initHub({ dir, listen: '127.0.0.1:9581' });
    const config = join(dir, 'hub.yaml');
    expect((await run(['add-device', 'pi', '--config', config])).code).toBe(0);
    return { config, keyFile: join(dir, 'devices', 'pi.key'), registry: join(dir, 'registry.json') };
  }

  it("refuses to replace a device's only key without --force, and says why and what to do", async () => {
    const { config, keyFile, registry } = await hubWithDevice();
    const key = readFileSync(keyFile, 'utf8');
    const before = readFileSync(registry, 'utf8');
    const err = await run(['rotate-key', 'pi', '--slot', 'primary', '--config', config]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DevstreamsError);
    expect((err as Error).message).toBe(
      'the primary key is the only key of device "pi": replacing it cuts the device off until it has the new key. ' +
        'Rotate into the empty slot instead (devstreams hub rotate-key pi --slot secondary), or add --force to replace it anyway',
    );
    expect(readFileSync(registry, 'utf8')).toBe(before);
    expect(readFileSync(keyFile, 'utf8')).toBe(key);

    const forced = await run(['rotate-key', 'pi', '--slot', 'primary', '--force', '--config', config]);
    expect(forced.code).toBe(0);
    expect(forced.out).toContain("it replaced the device's only key: the device is cut off until it has this one");
    expect(forced.out).not.toMatch(/still works|revoke-key/);
    expect(readFileSync(keyFile, 'utf8')).not.toBe(key);
    expect(Object.keys(readRegistryFile(registry).devices.pi!.keys)).toEqual(['primary']);
  });

  it('into the empty slot: the other key still works, a reload of the agent is enough, then revoke the old slot', async () => {
    const { config } = await hubWithDevice();
    const r = await run(['rotate-key', 'pi', '--config', config]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('; the primary key still works\n');
    expect(r.out).toContain("Copy it to the device's key file and reload its agent (systemctl reload devstreams-agent, or kill -HUP its process);");
    expect(r.out).not.toMatch(/restart/);
    expect(r.out).toContain(`  devstreams hub revoke-key pi --slot primary --config ${config}\n`);
    // Both slots full: rotating primary keeps secondary working, no --force needed.
    const p = await run(['rotate-key', 'pi', '--slot', 'primary', '--config', config]);
    expect(p.code).toBe(0);
    expect(p.out).toContain('; the secondary key still works\n');
  });
});

describe('devstreams hub token list', () => {
  it('prints space-aligned columns, as the other tables, with the scopes and never a secret', async () => {
    const dir = tempDir();
    dirs.push(dir);
    initHub({ dir, listen: '127.0.0.1:0' });
    const cfg = join(dir, 'hub.yaml');
    const created = await run(['token', 'create', 'ci-plant-long-name', '--devices', 'plant-*', '--services', 'ssh,web', '--config', cfg]);
    expect(created.code).toBe(0);
    const r = await run(['token', 'list', '--config', cfg]);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME {2,}DEVICES {2,}SERVICES {2,}CREATED$/);
    expect(r.out).not.toContain('\t');
    expect(r.out).not.toContain(created.out.trim());
    const row = lines.find((l) => l.startsWith('ci-plant-long-name'))!;
    expect(row.split(/ {2,}/).slice(0, 3)).toEqual(['ci-plant-long-name', 'plant-*', 'ssh,web']);
    // Each column starts at the same place on every line.
    expect(row.indexOf('plant-*')).toBe(lines[0]!.indexOf('DEVICES'));
  });
});
