import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StreamRecord } from '../../protocol/index.js';
import { CLI } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';

/**
 * `devstreams connect` ended by a signal, as OpenSSH ends its ProxyCommand (SIGHUP) and as a user
 * or a supervisor does (SIGTERM, SIGINT): the stream is closed normally and the hub records `ok`.
 */
describe('connect ended by a signal', () => {
  const stack = new Stack();

  beforeAll(async () => {
    await stack.start([{ id: 'pi-sig', allow: ['echo'] }]);
  });
  afterAll(async () => {
    await stack.stop();
  });

  for (const signal of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) {
    it(`${signal} while the stream is open: exit 0, no line, the hub records ok closed by service`, async () => {
      const before = await records();
      // Standard input stays open (a pipe the test holds), as ssh's is while the session runs.
      const child = spawn(process.execPath, [CLI, 'connect', 'pi-sig', 'echo'], { env: { ...process.env, ...stack.env }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const echoed = new Promise<void>((resolve) =>
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString();
          if (stdout === 'ping') resolve();
        }),
      );
      child.stdin.write('ping');
      await echoed;
      const exited = once(child, 'exit');
      child.kill(signal);
      const [code, killedBy] = (await exited) as [number | null, NodeJS.Signals | null];
      expect({ code, killedBy, stderr }).toEqual({ code: 0, killedBy: null, stderr: '' });
      const record = await newRecord(before);
      expect({ result: record.result, code: record.code, closedBy: record.closedBy }).toEqual({ result: 'ok', code: 'OK', closedBy: 'service' });
    });
  }

  async function records(): Promise<StreamRecord[]> {
    const client = stack.client();
    try {
      return await client.listStreams({ device: 'pi-sig' });
    } finally {
      client.close();
    }
  }

  /** The first record that was not in `before` (polled, bounded: the hub writes it as the stream ends). */
  async function newRecord(before: StreamRecord[]): Promise<StreamRecord> {
    const seen = new Set(before.map((r) => r.streamId));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const fresh = (await records()).find((r) => !seen.has(r.streamId));
      if (fresh) return fresh;
      if (Date.now() > deadline) throw new Error('the hub recorded no stream');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
});
