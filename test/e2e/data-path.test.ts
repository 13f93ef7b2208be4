import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DevstreamsClient } from '../../service/index.js';
import { describeEachBroker } from '../helpers/brokers.js';
import { CliProcess } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';
import { digestTarget, echoTarget, type Target } from '../helpers/targets.js';
import { readToEnd, roundTrip, sha256 } from '../helpers/streams.js';

const sha = sha256;
/** What the held client writes: well over what the path to the echo target and back held here (30-39 MiB). */
const HELD_MIB = 128;
const PIECE = 64 * 1024;

/** Resolves once `value()` has not changed for `ms` (a writer held back makes no progress). */
async function untilStill(value: () => number, ms: number): Promise<void> {
  for (let last = -1; last !== value(); ) {
    last = value();
    await new Promise((r) => setTimeout(r, ms));
  }
}

// The relay data path does not touch the broker: the Mosquitto run uses smaller sizes and counts.
describeEachBroker('the data path, end to end (hub and agent as real processes, TLS on)', (b) => {
  const stack = new Stack(b.stackOptions());
  const bigMB = b.embedded ? 100 : 4;
  const parallel = b.embedded ? 50 : 16;
  let echo: Target;
  let digest: Target;
  let client: DevstreamsClient;

  beforeAll(async () => {
    echo = await echoTarget();
    digest = await digestTarget();
    await stack.start([
      { id: 'pi-data', allow: [`tcpecho=${echo.port}`, `digest=${digest.port}`, 'echo'], limits: { maxStreams: 64 } },
    ]);
    client = new DevstreamsClient({ hub: stack.hubUrl, token: stack.token, ca: readFileSync(stack.caFile) });
  });
  afterAll(async () => {
    client?.close();
    await stack.stop();
    await echo?.close();
    await digest?.close();
  });

  it(`carries ${bigMB} MB of random bytes each way through one stream, checked by SHA-256`, async () => {
    const payload = randomBytes(bigMB * 1024 * 1024);
    const s = await client.openStream('pi-data', 'tcpecho');
    const back = await roundTrip(s, payload);
    expect(back.length).toBe(payload.length);
    expect(sha(back)).toBe(sha(payload));
  });

  it(`carries ${parallel} streams at once, each checked`, async () => {
    const results = await Promise.all(
      Array.from({ length: parallel }, async (_, i) => {
        const payload = randomBytes(256 * 1024 + i);
        const s = await client.openStream('pi-data', i % 2 ? 'tcpecho' : 'echo');
        const back = await roundTrip(s, payload);
        return sha(back) === sha(payload) && back.length === payload.length;
      }),
    );
    expect(results.filter(Boolean).length).toBe(parallel);
  });

  it('carries a half-close: a client that ends after sending still receives the whole reply', async () => {
    const fwd = new CliProcess(['forward', 'pi-data', 'digest', '--listen', '127.0.0.1:0'], stack.env);
    try {
      const line = await fwd.waitForLine((l) => l.startsWith('listening on '));
      const port = Number(/:(\d+) ->/.exec(line)![1]);
      const payload = randomBytes(3 * 1024 * 1024 + 3);
      const sock = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      await once(sock, 'connect');
      const reply = roundTrip(sock, payload);
      expect((await reply).toString()).toBe(`${sha(payload)} ${payload.length}\n`);
    } finally {
      await fwd.stop();
    }
  });

  it('a client that stops reading holds back its own stream only, and gets every byte once it reads again', async () => {
    const fwd = new CliProcess(['forward', 'pi-data', 'tcpecho', '--listen', '127.0.0.1:0'], stack.env);
    try {
      const line = await fwd.waitForLine((l) => l.startsWith('listening on '));
      const port = Number(/:(\d+) ->/.exec(line)![1]);
      const slow = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      await once(slow, 'connect');
      slow.pause(); // reads nothing of the echo for now
      // HELD_MIB of pieces, each numbered, so a lost or reordered piece changes the digest.
      const block = randomBytes(PIECE);
      const sent = createHash('sha256');
      let written = 0;
      const writing = (async () => {
        for (let i = 0; i < (HELD_MIB * 1024 * 1024) / PIECE; i++) {
          const piece = Buffer.from(block);
          piece.writeUInt32BE(i, 0);
          sent.update(piece);
          if (!slow.write(piece)) await once(slow, 'drain');
          written += piece.length;
        }
        slow.end();
      })();
      // Held back: the writer stops, well before the end, once the echo has filled what lies between.
      await untilStill(() => written, 500);
      expect(written).toBeLessThan(HELD_MIB * 1024 * 1024);
      // Meanwhile a second stream through the same `forward` carries its bytes.
      const other = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      await once(other, 'connect');
      const small = randomBytes(256 * 1024 + 1);
      expect(sha(await roundTrip(other, small))).toBe(sha(small));
      // Reads again: every byte comes back, in order.
      const got = await readToEnd(slow);
      await writing;
      expect(got.bytes).toBe(HELD_MIB * 1024 * 1024);
      expect(got.digest).toBe(sent.digest('hex'));
    } finally {
      await fwd.stop();
    }
  });

  it('records each stream at the hub with bytes each way and who closed', async () => {
    const s = await client.openStream('pi-data', 'echo');
    const payload = randomBytes(12345);
    await roundTrip(s, payload);
    const line = await stack.hub.waitForLog('stream ended', { device: 'pi-data', bytesToDevice: 12345 });
    expect(line).toMatchObject({ service: 'echo', result: 'ok', bytesFromDevice: 12345 });
    const records = await client.listStreams();
    expect(records.some((r) => r.bytesToDevice === 12345 && r.result === 'ok' && r.device === 'pi-data')).toBe(true);
  });
});
