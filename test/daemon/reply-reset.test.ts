import { once } from 'node:events';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WsDuplex } from '../../protocol/index.js';
import type { Target } from '../helpers/targets.js';
import { DaemonStack, fdCounts } from './harness.js';

const PARALLEL = 64;
const ROUNDS = 3;
const REPLY = Buffer.from('0123456789');

/**
 * Local services that answer a few bytes and then reset the connection (RST): `greet` at once on
 * connect (mostly before the agent's connect completes: refused), `soon` 5 ms after connect (mostly
 * while the agent dials the relay, before the bridge exists), `reply` when the service's first bytes
 * arrive (inside the bridge).
 */
async function replyResetTarget(when: 'greet' | 'soon' | 'reply'): Promise<Target> {
  const t = { port: 0, connections: 0 } as Target;
  const srv = net.createServer((s) => {
    t.connections++;
    s.on('error', () => {});
    const go = (): void => {
      s.write(REPLY);
      s.resetAndDestroy();
    };
    if (when === 'greet') go();
    else if (when === 'soon') setTimeout(go, 5); // the service's own pace, not a wait of the test
    else s.once('data', go);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.port = (srv.address() as net.AddressInfo).port;
  t.close = () => new Promise((r) => srv.close(() => r()));
  return t;
}

/** How a stream ended on the service side: its error code (or 'eof'), and the bytes it got. */
interface Outcome {
  end: string;
  bytes: number;
}

/** Opens the stream, writes a little, and waits (bounded) until the SDK's stream has closed. */
async function oneStream(open: () => Promise<WsDuplex>): Promise<Outcome> {
  let s: WsDuplex;
  try {
    s = await open();
  } catch (err) {
    // A target that resets at once may beat the agent's connect: refused, TARGET_UNREACHABLE.
    return { end: `refused:${(err as { code?: string }).code}`, bytes: 0 };
  }
  let bytes = 0;
  let end = 'none';
  s.on('data', (c: Buffer) => (bytes += c.length));
  s.on('end', () => (end = end === 'none' ? 'eof' : end));
  s.on('error', (e: Error & { code?: string }) => (end = e.code ?? e.message));
  s.write('hello');
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    new Promise<boolean>((r) => (s.destroyed ? r(true) : s.once('close', () => r(true)))),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 15_000))),
  ]);
  clearTimeout(timer);
  if (!closed) {
    s.destroy();
    return { end: `still open after 15 s (${end})`, bytes };
  }
  return { end, bytes };
}

describe('a local service that replies and then resets', () => {
  const stack = new DaemonStack();
  const targets: Target[] = [];

  beforeAll(async () => {
    targets.push(await replyResetTarget('greet'), await replyResetTarget('soon'), await replyResetTarget('reply'));
    await stack.setup({
      allow: [`greet=${targets[0]!.port}`, `soon=${targets[1]!.port}`, `reply=${targets[2]!.port}`],
      agent: (c) => (c.limits = { ...c.limits, maxStreams: PARALLEL }),
    });
    await stack.startHub();
    await stack.startAgent();
  });
  afterAll(async () => {
    await stack.stop();
    for (const t of targets) await t.close();
  });

  for (const service of ['greet', 'soon', 'reply'] as const) {
    it(`${service}: ${ROUNDS} x ${PARALLEL} streams in parallel all end on the service side and at the agent, no descriptors kept`, async () => {
      const client = stack.client();
      try {
        // Warm-up, so what the agent creates once exists before counting.
        await oneStream(() => client.openStream(stack.deviceId, service));
        await stack.waitForDevice(true, 0);
        const pid = stack.agent.child.pid!;
        const before = fdCounts(pid);
        const outcomes: Record<string, number> = {};
        for (let round = 0; round < ROUNDS; round++) {
          const results = await Promise.all(Array.from({ length: PARALLEL }, () => oneStream(() => client.openStream(stack.deviceId, service))));
          for (const r of results) {
            const k = `${r.end}/${r.bytes}`;
            outcomes[k] = (outcomes[k] ?? 0) + 1;
          }
        }
        const keys = Object.keys(outcomes);
        // Every stream closed on the service side (none 'still open'), having seen the reset as an
        // error, not as an EOF alone (this side never ends its half, so a clean close is impossible).
        expect(keys.filter((k) => /^(still open|none|eof)/.test(k)), JSON.stringify(outcomes)).toEqual([]);
        // The agent frees every slot (its status says 0 open streams) and every descriptor.
        await stack.waitForDevice(true, 0, 20_000);
        let after = fdCounts(pid);
        for (let i = 0; i < 50 && after.fds > before.fds + 3; i++) {
          await new Promise((r) => setTimeout(r, 100));
          after = fdCounts(pid);
        }
        expect(after.fds, `before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`).toBeLessThanOrEqual(before.fds + 3);
        expect(after.sockets).toBeLessThanOrEqual(before.sockets + 3);
        console.log(service, JSON.stringify(outcomes));
      } finally {
        client.close();
      }
    }, 120_000);
  }
});
