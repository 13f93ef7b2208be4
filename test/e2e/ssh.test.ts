import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StreamRecord } from '../../protocol/index.js';
import { describeEachBroker } from '../helpers/brokers.js';
import { CLI, CliProcess } from '../helpers/proc.js';
import { haveSshd, startSshd, type Sshd } from '../helpers/sshd.js';
import { Stack } from '../helpers/stack.js';

const run = promisify(execFile);

describe.skipIf(!haveSshd)('OpenSSH through devstreams', () => describeEachBroker('real sshd, real ssh client', (b) => {
  const stack = new Stack(b.stackOptions());
  let sshd: Sshd;

  beforeAll(async () => {
    sshd = await startSshd();
    await stack.start([{ id: 'pi-ssh', allow: [`ssh=${sshd.port}`] }]);
  });
  afterAll(async () => {
    await stack.stop();
    await sshd?.stop();
  });

  it('runs a command through ProxyCommand="devstreams connect %h ssh", and the hub records the session ok', async () => {
    const before = new Set((await records()).map((r) => r.streamId));
    const proxy = `${process.execPath} ${CLI} connect %h ssh`;
    const { stdout } = await run(
      'ssh',
      [...sshd.sshArgs('pi-ssh'), '-o', `ProxyCommand=${proxy}`, `${sshd.user}@pi-ssh`, 'echo hello-from-$(hostname -s >/dev/null; echo device)'],
      { env: { ...process.env, ...stack.env }, timeout: 30_000 },
    );
    expect(stdout.trim()).toBe('hello-from-device');
    // ssh ends its ProxyCommand with SIGHUP: connect closes the stream normally, not a bare 1006.
    const deadline = Date.now() + 10_000;
    let record: StreamRecord | undefined;
    while (!(record = (await records()).find((r) => !before.has(r.streamId))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(record && { result: record.result, code: record.code, reason: record.reason }).toEqual({ result: 'ok', code: 'OK', reason: '' });
  });

  async function records(): Promise<StreamRecord[]> {
    const client = stack.client();
    try {
      return await client.listStreams({ device: 'pi-ssh' });
    } finally {
      client.close();
    }
  }

  it('echoes 16 MB through ProxyCommand="devstreams connect %h ssh", checked by SHA-256 (stdin and stdout as widened pipes)', async () => {
    const proxy = `${process.execPath} ${CLI} connect %h ssh`;
    const payload = randomBytes(16 * 1024 * 1024);
    const echoed = await new Promise<Buffer>((resolve, reject) => {
      const child = execFile(
        'ssh',
        [...sshd.sshArgs('pi-ssh'), '-o', `ProxyCommand=${proxy}`, `${sshd.user}@pi-ssh`, 'cat'],
        { env: { ...process.env, ...stack.env }, timeout: 60_000, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      );
      child.stdin!.end(payload);
    });
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(echoed.length).toBe(payload.length);
    expect(sha(echoed)).toBe(sha(payload));
  });

  it('copies 5 MB through `devstreams forward` with ssh -p, checked by SHA-256', async () => {
    const fwd = new CliProcess(['forward', 'pi-ssh', 'ssh', '--listen', '127.0.0.1:0'], stack.env);
    try {
      const line = await fwd.waitForLine((l) => l.startsWith('listening on '));
      const port = /:(\d+) ->/.exec(line)![1]!;
      const payload = randomBytes(5 * 1024 * 1024);
      const child = execFile(
        'ssh',
        [...sshd.sshArgs('[127.0.0.1]:' + port), '-p', port, `${sshd.user}@127.0.0.1`, 'sha256sum'],
        { timeout: 30_000, encoding: 'utf8' },
      );
      child.stdin!.end(payload);
      const out = await new Promise<string>((resolve, reject) => {
        let s = '';
        child.stdout!.on('data', (d) => (s += d));
        child.on('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`ssh exited ${code}`))));
      });
      expect(out.split(' ')[0]).toBe(createHash('sha256').update(payload).digest('hex'));
    } finally {
      await fwd.stop();
    }
  });
}));
