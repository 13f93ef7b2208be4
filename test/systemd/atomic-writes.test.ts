import { X509Certificate, createPrivateKey } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, runCli } from '../helpers/proc.js';

/**
 * Every file the hub CLI writes is written atomically (hub/files.ts: temp file, fsync, rename, fsync
 * of the folder): `hub add-device` and `hub init`, each a separate process, SIGKILLed at random
 * moments, leave each file either as it was or complete, never half written.
 *
 * add-device: a third of the kills come at a uniformly random time within a normal run (most land
 * in start-up), a third a random 0-4 ms after the first change in the devices folder (among the
 * device files' writes), a third 0-2 ms after one in the hub folder (among the registry's write).
 */

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const newDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'devstreams-atomic-'));
  dirs.push(d);
  return d;
};

interface Outcome {
  killed: boolean;
  ms: number;
}

/** Runs `devstreams ARGS` and SIGKILLs it after `killAfterMs`, or `afterChangeMs` after `watchDir` changes. */
async function runAndKill(args: string[], kill: { afterMs?: number; watchDir?: string; afterChangeMs?: number }): Promise<Outcome> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
  const timers: NodeJS.Timeout[] = [];
  const killNow = (): void => void child.kill('SIGKILL');
  if (kill.afterMs !== undefined) timers.push(setTimeout(killNow, kill.afterMs));
  const watcher = kill.watchDir ? watch(kill.watchDir, { recursive: false }, () => timers.push(setTimeout(killNow, kill.afterChangeMs ?? 0))) : undefined;
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  watcher?.close();
  for (const t of timers) clearTimeout(t);
  if (signal === null) expect(code).toBe(0);
  return { killed: signal === 'SIGKILL', ms: performance.now() - started };
}

type Registry = { devices: Record<string, unknown> };
const readRegistry = (file: string): Registry => JSON.parse(readFileSync(file, 'utf8')) as Registry;

describe('atomic writes under kill -9', () => {
  it('hub add-device: the registry is always the old or the new one; device files are whole or absent', async () => {
    const dir = newDir();
    const init = await runCli(['hub', 'init', '--dir', dir, '--listen', '127.0.0.1:8443']);
    expect(init.code, init.stderr).toBe(0);
    const config = join(dir, 'hub.yaml');
    const registryFile = join(dir, 'registry.json');
    // One complete run first: its duration scales the random kill times.
    const first = await runAndKill(['hub', 'add-device', 'dev-0', '--config', config, '--allow', 'echo'], {});
    const devicesDir = join(dir, 'devices');
    let before = readRegistry(registryFile);
    expect(Object.keys(before.devices)).toEqual(['dev-0']);

    const counts = { completed: 0, killedBeforeRegistry: 0, killedWithFiles: 0 };
    for (let i = 1; i <= 12; i++) {
      const id = `dev-${i}`;
      // Uniformly random; among the device files' writes; among the registry's write.
      const kill = [
        { afterMs: Math.random() * first.ms * 1.2 },
        { watchDir: devicesDir, afterChangeMs: Math.random() * 4 },
        { watchDir: dir, afterChangeMs: Math.random() * 2 },
      ][i % 3]!;
      const outcome = await runAndKill(['hub', 'add-device', id, '--config', config, '--allow', 'echo'], kill);

      const after = readRegistry(registryFile); // throws if half written
      const added = Object.keys(after.devices).filter((d) => !(d in before.devices));
      expect(added.length === 0 || (added.length === 1 && added[0] === id), `registry after ${id}: ${added}`).toBe(true);
      for (const [d, entry] of Object.entries(before.devices)) expect(after.devices[d]).toEqual(entry);
      if (!outcome.killed) expect(added).toEqual([id]);

      // The device's own files: absent, or complete.
      const keyFile = join(devicesDir, `${id}.key`);
      if (existsSync(keyFile)) expect(readFileSync(keyFile, 'utf8')).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const agentFile = join(devicesDir, `${id}.yaml`);
      if (existsSync(agentFile)) expect((parse(readFileSync(agentFile, 'utf8')) as { hub: { deviceId: string } }).hub.deviceId).toBe(id);

      if (!outcome.killed) counts.completed++;
      else if (added.length === 0 && existsSync(keyFile)) counts.killedWithFiles++;
      else if (added.length === 0) counts.killedBeforeRegistry++;
      else counts.completed++; // killed after its last write
      before = after;
    }
    // No temporary file is ever taken for the real one; strays may remain from a kill mid-write.
    const strays = readdirSync(devicesDir).filter((f) => f.endsWith('.tmp'));
    for (const f of strays) expect(f).toMatch(/^\.dev-\d+\.(key|yaml)\.[0-9a-f]{12}\.tmp$|^\.ca\.pem\.[0-9a-f]{12}\.tmp$/);
    console.log(`add-device kills: ${JSON.stringify(counts)}, stray temp files: ${strays.length}`);
  });

  it('hub init: every file it leaves is complete', async () => {
    const probe = newDir();
    const full = await runAndKill(['hub', 'init', '--dir', join(probe, 'hub'), '--listen', '127.0.0.1:8443'], {});
    for (let i = 0; i < 5; i++) {
      const dir = join(newDir(), 'hub');
      await runAndKill(['hub', 'init', '--dir', dir, '--listen', '127.0.0.1:8443'], { afterMs: full.ms * (0.5 + Math.random() * 0.6) });
      if (!existsSync(dir)) continue;
      const has = (f: string): boolean => existsSync(join(dir, f));
      if (has('tls/ca.crt')) new X509Certificate(readFileSync(join(dir, 'tls/ca.crt')));
      if (has('tls/hub.crt')) new X509Certificate(readFileSync(join(dir, 'tls/hub.crt')));
      if (has('tls/ca.key')) createPrivateKey(readFileSync(join(dir, 'tls/ca.key')));
      if (has('tls/hub.key')) createPrivateKey(readFileSync(join(dir, 'tls/hub.key')));
      if (has('service.token')) expect(readFileSync(join(dir, 'service.token'), 'utf8')).toMatch(/^[A-Za-z0-9_.-]{20,}$/);
      if (has('registry.json')) expect(readRegistry(join(dir, 'registry.json')).devices).toEqual({});
      if (has('hub.yaml')) expect((parse(readFileSync(join(dir, 'hub.yaml'), 'utf8')) as { listen: string }).listen).toBe('127.0.0.1:8443');
    }
  });
});
