import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevstreamsClient } from '../../service/index.js';
import { CliProcess, freePort } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';
import { holdTarget, type Target } from '../helpers/targets.js';
import { Mosquitto, haveMosquitto } from './mosquitto.js';

async function echoOnce(s: Duplex, text: string): Promise<string> {
  const got = once(s, 'data');
  s.write(text);
  return String((await got)[0]);
}

/** Two hub processes on one Mosquitto and one registry folder: node A (the stack's hub) and node B. */
describe.skipIf(!haveMosquitto)('several hub nodes on one broker', () => {
  const stack = new Stack({ broker: new Mosquitto() });
  let nodeB: CliProcess;
  let portB = 0;
  let hold: Target;
  let clientA: DevstreamsClient;
  let clientB: DevstreamsClient;

  beforeAll(async () => {
    hold = await holdTarget();
    await stack.start([{ id: 'pi-n', allow: ['echo', `hold=${hold.port}`] }]);
    // Node B: the same config and registry, its own listen port, node id and history file.
    portB = await freePort();
    const cfg = parse(readFileSync(join(stack.dir, 'hub.yaml'), 'utf8')) as Record<string, unknown>;
    cfg.listen = `127.0.0.1:${portB}`;
    cfg.history = { file: 'history-b.sqlite' };
    writeFileSync(join(stack.dir, 'hub-b.yaml'), stringify(cfg), { mode: 0o600 });
    nodeB = new CliProcess(['hub', '--config', join(stack.dir, 'hub-b.yaml')]);
    await nodeB.waitForLog('hub listening');
    const ca = readFileSync(stack.caFile);
    clientA = new DevstreamsClient({ hub: stack.hubUrl, token: stack.token, ca });
    clientB = new DevstreamsClient({ hub: `https://localhost:${portB}`, token: stack.token, ca });
    // Node B learns the device is online from its retained status (bounded wait).
    for (let i = 0; i < 200 && !(await clientB.getDevice('pi-n')).online; i++) await new Promise((r) => setTimeout(r, 50));
  });
  afterAll(async () => {
    clientA?.close();
    clientB?.close();
    await nodeB?.stop();
    await stack.stop();
    await hold?.close();
  });

  it('streams through node A and node B to the same device at once, each paired and logged on its own node', async () => {
    expect((await clientB.getDevice('pi-n')).online).toBe(true);
    const [a, b] = await Promise.all([clientA.openStream('pi-n', 'echo'), clientB.openStream('pi-n', 'echo')]);
    expect(await echoOnce(a, 'via-a')).toBe('via-a');
    expect(await echoOnce(b, 'via-b')).toBe('via-b');
    a.destroy();
    b.destroy();
    const recA = await stack.hub.waitForLog('stream ended', { device: 'pi-n' });
    const recB = await nodeB.waitForLog('stream ended', { device: 'pi-n' });
    expect(recA.streamId).not.toBe(recB.streamId);
  });

  it('node A killed: node B serves new streams; A\'s open streams end on the service side and the device frees them', async () => {
    const held = await clientA.openStream('pi-n', 'hold');
    const echoA = await clientA.openStream('pi-n', 'echo');
    expect(await echoOnce(echoA, 'x')).toBe('x');
    await stack.waitForDeviceInfo('pi-n', (d) => d.openStreams === 2, 'holding two streams');
    const ends = [held, echoA].map((s) => new Promise<string>((resolve) => {
      s.once('error', (e: Error) => resolve(`error: ${e.message}`));
      s.once('close', () => resolve('close'));
    }));
    const targetConnections = hold.connections;
    expect(targetConnections).toBeGreaterThan(0);

    stack.hub.child.kill('SIGKILL');
    await stack.hub.exited;
    const outcomes = await Promise.all(ends);
    expect(outcomes).toHaveLength(2); // both service-side streams ended (error or close), none hangs

    // Node B keeps serving, and sees the device free both of A's streams.
    const viaB = await clientB.openStream('pi-n', 'echo');
    expect(await echoOnce(viaB, 'after-kill')).toBe('after-kill');
    viaB.destroy();
    const deadline = Date.now() + 20_000;
    let d = await clientB.getDevice('pi-n');
    while (d.openStreams !== 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      d = await clientB.getDevice('pi-n');
    }
    expect(d.online).toBe(true);
    expect(d.openStreams).toBe(0);
  });
});
