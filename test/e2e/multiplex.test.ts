import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { Duplex } from 'node:stream';
import { parse, stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MUX_MAX_WINDOW_BYTES } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/index.js';
import { CliProcess, ROOT } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';
import { echoTarget, type Target } from '../helpers/targets.js';
import { roundTrip, sha256 } from '../helpers/streams.js';

/**
 * Multiplexed streams (docs/MULTIPLEXING.md) with the hub and the agent as real processes: the
 * SDK and the agent each carry all their streams on one connection, a stalled stream holds up
 * no other, and either side falls back to a WebSocket per stream when the other does not offer it.
 */

const MUX_OPEN = 'multiplexed connection open';

function client(stack: Stack, multiplex = true): DevstreamsClient {
  return new DevstreamsClient({ hub: stack.hubUrl, token: stack.token, ca: readFileSync(stack.caFile), multiplex });
}

/** Sets fields of a YAML config file in place. */
function editYaml(file: string, edit: (cfg: Record<string, Record<string, unknown>>) => void): void {
  const cfg = parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
  edit(cfg);
  writeFileSync(file, stringify(cfg), { mode: 0o600 });
}

/** Streams carried: each round trip returns exactly what was sent. */
async function carryEach(c: DevstreamsClient, device: string, count: number, bytes: number): Promise<void> {
  const payloads = Array.from({ length: count }, () => randomBytes(bytes));
  const streams = await Promise.all(payloads.map(() => c.openStream(device, 'tcpecho')));
  const back = await Promise.all(streams.map((s, i) => roundTrip(s, payloads[i]!)));
  back.forEach((b, i) => expect(sha256(b)).toBe(sha256(payloads[i]!)));
}

let echo: Target;
beforeAll(async () => {
  echo = await echoTarget();
});
afterAll(async () => {
  await echo?.close();
});

describe('multiplexed streams, end to end', () => {
  const stack = new Stack();
  let c: DevstreamsClient;

  beforeAll(async () => {
    await stack.start([{ id: 'pi-mux', allow: [`tcpecho=${echo.port}`], limits: { maxStreams: 64 } }]);
    c = client(stack);
  });
  afterAll(async () => {
    c?.close();
    await stack.stop();
  });

  it('carries 40 streams at once on one connection from the SDK and one from the agent, each checked', async () => {
    await carryEach(c, 'pi-mux', 40, 256 * 1024);
    const opened = stack.hub.logs(MUX_OPEN);
    expect(opened.filter((l) => l.device === 'pi-mux')).toHaveLength(1);
    expect(opened.filter((l) => typeof l.caller === 'string')).toHaveLength(1);
    expect(stack.agents.get('pi-mux')!.logs(MUX_OPEN)).toHaveLength(1);
    // Every stream recorded as a clean end with its bytes (the history is written as they close).
    const deadline = Date.now() + 10_000;
    let records = await c.listStreams({ device: 'pi-mux' });
    while (records.filter((r) => r.result === 'ok').length < 40 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      records = await c.listStreams({ device: 'pi-mux' });
    }
    const ok = records.filter((r) => r.result === 'ok' && r.bytesToDevice === 256 * 1024 && r.bytesFromDevice === 256 * 1024);
    expect(ok).toHaveLength(40);
  });

  it("the SDK's connection, idle, does not keep a program alive: it exits without client.close()", async () => {
    // A program as users write one: open a stream, use it, end it, and return from main.
    const dir = mkdtempSync(join(tmpdir(), 'devstreams-sdk-exit-'));
    try {
      const entry = join(dir, 'main.ts');
      writeFileSync(
        entry,
        `import { DevstreamsClient } from ${JSON.stringify(join(ROOT, 'service/index.ts'))};
async function main() {
  const client = new DevstreamsClient({ hub: process.env.HUB, token: process.env.TOKEN, ca: process.env.CA });
  const s = await client.openStream('pi-mux', 'tcpecho');
  const back = [];
  s.on('data', (d) => back.push(d));
  s.end('ping');
  await new Promise((r) => s.once('close', r));
  console.log('done ' + Buffer.concat(back).toString());
}
void main();
`,
      );
      const out = join(dir, 'main.cjs');
      await build({ entryPoints: [entry], outfile: out, bundle: true, platform: 'node', format: 'cjs', external: ['bufferutil', 'utf-8-validate'], logLevel: 'silent' });
      const child = spawn(process.execPath, [out], {
        env: { ...process.env, HUB: stack.hubUrl, TOKEN: stack.token, CA: readFileSync(stack.caFile, 'utf8') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const started = Date.now();
      // Held by its idle connection, it would run for the connection's idle minute.
      const exit = await Promise.race([
        once(child, 'exit').then(([code]) => code as number),
        new Promise<string>((r) => setTimeout(() => r('still running'), 20_000)),
      ]);
      if (exit === 'still running') child.kill('SIGKILL');
      expect(exit, stderr).toBe(0);
      expect(stdout.trim()).toBe('done ping');
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a stream whose reader stalls holds up no other stream on the same connections', async () => {
    const stalled = await c.openStream('pi-mux', 'tcpecho');
    // 12 MiB fill every buffer with fixed windows; the way out's two channels may grow their
    // windows (up to MUX_MAX_WINDOW_BYTES each) on a busy machine, and hold that much more.
    const big = randomBytes(12 * 1024 * 1024 + 2 * MUX_MAX_WINDOW_BYTES);
    // Written and never read: its echo fills every window and buffer on the way back, then its
    // own sending stops. Nothing of it is lost.
    stalled.write(big);
    stalled.end();
    await waitForStall(stalled);
    await carryEach(c, 'pi-mux', 4, 2 * 1024 * 1024);
    const back = await readAll(stalled);
    expect(sha256(back)).toBe(sha256(big));
  });
});

/** Resolves once the stream's writes are held back (its writable buffer stops draining). */
async function waitForStall(s: Duplex): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = -1;
  for (;;) {
    const pending = s.writableLength;
    if (pending > 0 && pending === last) return;
    if (Date.now() > deadline) throw new Error(`the stream never stalled (${pending} bytes pending)`);
    last = pending;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function readAll(s: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  await once(s, 'end');
  return Buffer.concat(chunks);
}

describe('falling back to a WebSocket per stream', () => {
  let stack: Stack;
  let c: DevstreamsClient | undefined;
  afterEach(async () => {
    c?.close();
    await stack?.stop();
  });

  it('on a hub with relay.multiplex: false, the agent and the SDK each use a WebSocket per stream', async () => {
    stack = new Stack();
    await stack.start([{ id: 'pi-old-hub', allow: [`tcpecho=${echo.port}`], start: false }]);
    // The hub restarted with multiplexing off, as a hub of an older release would behave.
    await stack.hub.stop();
    editYaml(join(stack.dir, 'hub.yaml'), (cfg) => (cfg.relay = { ...cfg.relay, multiplex: false }));
    stack.hub = new CliProcess(['hub', '--config', join(stack.dir, 'hub.yaml')]);
    await stack.hub.waitForLog('hub listening');
    await stack.startAgent('pi-old-hub');
    c = client(stack);
    await carryEach(c, 'pi-old-hub', 6, 64 * 1024);
    const agent = stack.agents.get('pi-old-hub')!;
    const refused = agent.logs('relay refused a multiplexed connection; one WebSocket per stream');
    expect(refused).toHaveLength(1); // remembered: not asked again for each stream
    expect(refused[0]!.status).toBe(404);
    expect(agent.logs(MUX_OPEN)).toHaveLength(0);
    expect(stack.hub.logs(MUX_OPEN)).toHaveLength(0);
  });

  it('an agent with hub.multiplex: false dials a WebSocket per stream; the SDK still multiplexes', async () => {
    stack = new Stack();
    await stack.start([{ id: 'pi-no-mux', allow: [`tcpecho=${echo.port}`], start: false }]);
    editYaml(stack.agentConfig('pi-no-mux'), (cfg) => (cfg.hub = { ...cfg.hub, multiplex: false }));
    await stack.startAgent('pi-no-mux');
    c = client(stack);
    await carryEach(c, 'pi-no-mux', 6, 64 * 1024);
    expect(stack.agents.get('pi-no-mux')!.logs(MUX_OPEN)).toHaveLength(0);
    const opened = stack.hub.logs(MUX_OPEN);
    expect(opened.filter((l) => l.device !== undefined)).toHaveLength(0);
    expect(opened.filter((l) => typeof l.caller === 'string')).toHaveLength(1);
  });
});
