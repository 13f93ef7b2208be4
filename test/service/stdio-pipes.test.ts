import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadMallocTrimFrom, MALLOC_TRIM_ADDON, TCP_READ_BYTES } from '../../protocol/index.js';
import { standardInput } from '../../service/connect.js';
import { STDIO_PIPE_BYTES, widenPipes } from '../../service/stdio-pipes.js';
import { ROOT } from '../helpers/proc.js';

// service/stdio-pipes.ts: `devstreams connect` widens the pipes ssh gives it, through the native
// helper (the development build's: npm test builds it first).
const helper = () => loadMallocTrimFrom(join(ROOT, 'dist/native', MALLOC_TRIM_ADDON));
const dir = mkdtempSync(join(tmpdir(), 'devstreams-pipes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A FIFO's two ends (a pipe, as ssh gives its ProxyCommand): the reader as `devstreams connect` reads standard input. */
function fifo(name: string): { readFd: number; stdin: net.Socket; writer: net.Socket } {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const stdin = standardInput(readFd) as net.Socket;
  const writer = new net.Socket({ fd: openSync(path, constants.O_WRONLY | constants.O_NONBLOCK), readable: false, writable: true });
  return { readFd, stdin, writer };
}

/**
 * Writes `bytes` into the pipe and reads them through `stdin`; the largest read. With `writtenFirst`,
 * reading starts once the kernel has taken every byte (the pipe must hold them all).
 */
async function largestRead(p: ReturnType<typeof fifo>, bytes: number, writtenFirst: boolean): Promise<number> {
  const written = new Promise<void>((resolve, reject) => p.writer.write(Buffer.alloc(bytes, 7), (err) => (err ? reject(err) : resolve())));
  p.writer.end();
  if (writtenFirst) await written;
  let largest = 0;
  let total = 0;
  p.stdin.on('data', (c: Buffer) => {
    largest = Math.max(largest, c.length);
    total += c.length;
  });
  await once(p.stdin, 'end');
  await written;
  expect(total).toBe(bytes);
  return largest;
}

describe('widenPipes', () => {
  it('sets a pipe to 1 MiB, so one read of standard input takes a whole read buffer', async () => {
    const p = fifo('wide');
    try {
      expect(widenPipes([p.readFd], helper)).toEqual({ [p.readFd]: STDIO_PIPE_BYTES });
      expect(await largestRead(p, 3 * TCP_READ_BYTES, true)).toBe(TCP_READ_BYTES);
    } finally {
      p.writer.destroy();
      p.stdin.destroy();
    }
  });

  it('without it, a read takes what a pipe holds by default: 64 KiB', async () => {
    const p = fifo('narrow');
    try {
      // The kernel takes no more than the pipe holds: the write completes as the reader reads.
      expect(await largestRead(p, 3 * TCP_READ_BYTES, false)).toBeLessThanOrEqual(64 * 1024);
    } finally {
      p.writer.destroy();
      p.stdin.destroy();
    }
  });

  it('leaves what is not a pipe as it is, and says why', () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    const fd = openSync(file, 'r');
    try {
      expect(widenPipes([fd], helper)[fd]).toBeLessThan(0); // -EBADF: not a pipe
    } finally {
      closeSync(fd);
    }
  });

  it('does nothing where the helper cannot load, and says why', () => {
    const reason = 'no glibc on testos';
    expect(widenPipes([0, 1], () => ({ trim: null, thresholds: null, notify: null, pipeSize: null, threadName: null, reason }))).toEqual({ 0: reason, 1: reason });
  });
});
