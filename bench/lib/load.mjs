// The load generator (runs in the bench driver): throughput, ping-pong, set-up and concurrency
// against a port that leads to bench/target-server.mjs (directly or through a tunnel).
import net from 'node:net';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { rss } from './procs.mjs';

const now = () => performance.now();

function connect(port) {
  const s = net.connect({ port, host: '127.0.0.1', noDelay: true, allowHalfOpen: true });
  s.setNoDelay(true);
  return s;
}

/** The first bytes of a connection to bench/target-server.mjs: its mode and a byte count. */
export function header(mode, n) {
  const h = Buffer.alloc(9);
  h.write(mode, 0, 'latin1');
  h.writeBigUInt64BE(BigInt(n), 1);
  return h;
}

const CHUNK = Buffer.alloc(256 * 1024, 0xa5);

/**
 * Sends `bytes` to the target (or as many as fit in `maxS` seconds, then half-closes) and waits for
 * its one-byte acknowledgement; returns the bytes sent and the seconds.
 */
export async function upload(port, bytes, maxS = Infinity) {
  const s = connect(port);
  await once(s, 'connect');
  const t0 = now();
  s.write(header('U', bytes));
  let left = bytes;
  const acked = new Promise((resolve, reject) => {
    s.once('data', () => resolve());
    s.once('error', reject);
    s.once('end', () => reject(new Error('upload: ended before the acknowledgement')));
  });
  await new Promise((resolve, reject) => {
    s.once('error', reject);
    const pump = () => {
      while (left > 0) {
        if (now() - t0 > maxS * 1000) {
          s.end();
          break;
        }
        const c = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
        left -= c.length;
        if (!s.write(c)) return void s.once('drain', pump);
      }
      resolve();
    };
    pump();
  });
  await acked;
  const secs = (now() - t0) / 1000;
  s.destroy();
  return { bytes: bytes - left, secs };
}

/** Asks the target for `bytes` and reads them all (or for `maxS` seconds); returns the bytes read and the seconds. */
export async function download(port, bytes, maxS = Infinity) {
  const s = connect(port);
  await once(s, 'connect');
  const t0 = now();
  s.write(header('D', bytes));
  let got = 0;
  let secs = 0;
  await new Promise((resolve, reject) => {
    s.on('data', (d) => {
      got += d.length;
      if (got < bytes && now() - t0 > maxS * 1000) {
        secs = (now() - t0) / 1000;
        s.destroy();
        resolve();
      }
    });
    s.once('end', resolve);
    s.once('error', reject);
  });
  if (secs === 0) {
    if (got !== bytes) throw new Error(`download: got ${got} of ${bytes} bytes`);
    secs = (now() - t0) / 1000;
    s.end();
  }
  return { bytes: got, secs };
}

/** `n` transfers at once, each `bytes` (at most `maxS` seconds); returns the bytes moved and the wall time. */
export async function parallel(port, n, dir, bytes, maxS = Infinity) {
  const t0 = now();
  const r = await Promise.all(Array.from({ length: n }, () => (dir === 'up' ? upload(port, bytes, maxS) : download(port, bytes, maxS))));
  return { bytes: r.reduce((a, x) => a + x.bytes, 0), secs: (now() - t0) / 1000 };
}

/** One echo connection, `count` one-byte ping-pongs (at most `maxS` seconds); returns the round-trip times in microseconds. */
export async function pingPong(port, count, maxS = Infinity) {
  const s = connect(port);
  await once(s, 'connect');
  s.write('E');
  const one = Buffer.from('x');
  const times = new Float64Array(count);
  // warm-up: the stream is set up by the first exchange
  const start = now();
  let n = 0;
  for (let i = -20; i < count; i++) {
    const t0 = now();
    s.write(one);
    await once(s, 'data');
    if (i >= 0) times[n++] = (now() - t0) * 1000;
    if (now() - start > maxS * 1000) break;
  }
  s.destroy();
  return [...times.subarray(0, n)];
}

/** Connect, send, first byte back: the time a new stream takes to carry a byte both ways (ms). */
export async function firstByte(port) {
  const t0 = now();
  const s = connect(port);
  s.write('Ex');
  await new Promise((resolve, reject) => {
    s.once('data', resolve);
    s.once('error', reject);
    s.once('end', () => reject(new Error('set-up: ended before the first byte')));
  });
  const ms = now() - t0;
  s.end();
  s.resume();
  await once(s, 'close');
  return ms;
}

/** `count` streams one after another (none started after `maxS` seconds); returns each one's set-up time (ms) and the failures. */
export async function setupTimes(port, count, maxS = Infinity) {
  const times = [];
  const errors = [];
  const t0 = now();
  for (let i = 0; i < count && now() - t0 < maxS * 1000; i++) {
    try {
      times.push(await firstByte(port));
    } catch (err) {
      errors.push(err.code ?? err.message);
    }
  }
  return { times, errors };
}

/**
 * `total` streams with `inflight` at a time, but none started after `maxS` seconds (a slow machine
 * stays bounded); returns streams (that worked) per second and the failures.
 */
export async function setupRate(port, total, inflight, maxS = Infinity) {
  let started = 0;
  const errors = [];
  const t0 = now();
  const worker = async () => {
    while (started < total && now() - t0 < maxS * 1000) {
      started++;
      try {
        await firstByte(port);
      } catch (err) {
        errors.push(err.code ?? err.message);
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return { rate: (started - errors.length) / ((now() - t0) / 1000), started, errors };
}

/**
 * Opens `n` echo streams at once, sends each `bytes` random bytes and checks they come back; with
 * all `n` open (the peak) calls `atPeak`, then half-closes every stream and checks each one ends.
 * Returns how many streams failed.
 */
export async function concurrent(port, n, bytes, atPeak) {
  const conns = await Promise.all(
    Array.from({ length: n }, async () => {
      const data = randomBytes(bytes);
      const want = createHash('sha256').update(data).digest('hex');
      const s = connect(port);
      const h = createHash('sha256');
      let got = 0;
      const errors = [];
      s.on('error', (e) => errors.push(e));
      const ended = new Promise((resolve) => s.once('close', resolve));
      const full = new Promise((resolve) => {
        s.on('data', (d) => {
          h.update(d);
          got += d.length;
          if (got === bytes) resolve();
        });
        s.once('close', resolve);
      });
      s.write('E');
      s.write(data);
      await full;
      return { s, ended, check: () => got === bytes && errors.length === 0 && h.digest('hex') === want };
    }),
  );
  await atPeak();
  for (const c of conns) c.s.end();
  await Promise.all(conns.map((c) => c.ended));
  return conns.filter((c) => !c.check()).length;
}

/**
 * Memory per open stream (issue 6, figure 5): 20 streams first, to get one-time costs (code, TLS
 * sessions) out of the way, 3 s to settle, then `n` checked streams open at once (`concurrent`).
 * Returns the failures and the RSS of each of `path.pids` before and with all `n` open.
 */
export async function openAtOnce(path, n, bytes) {
  await setupTimes(path.port, 20);
  await new Promise((r) => setTimeout(r, 3000));
  const before = path.pids.map(rss);
  let peak;
  const failed = await concurrent(path.port, n, bytes, async () => {
    peak = path.pids.map(rss);
  });
  return { failed, before, peak };
}
