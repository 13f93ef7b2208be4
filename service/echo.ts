import { createHash, randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type { WsDuplex } from '../protocol/index.js';
import { openOrReport, type ServiceContext } from './context.js';
import { streamFailedLine } from './errors.js';

export interface EchoReport {
  sent: number;
  received: number;
  sentSha256: string;
  receivedSha256: string;
  /** openStream: API call, device decision, relay upgrade. */
  setupMs: number;
  /** First byte written to the device's EOF read. */
  roundTripMs: number;
}

const CHUNK = 64 * 1024;

/**
 * Writes `bytes` random bytes to an open echo stream, ends it, and reads everything back (reading
 * while writing, so backpressure holds). Resolves once the stream has closed cleanly; rejects with
 * the stream's error otherwise.
 */
export async function echoRoundTrip(stream: WsDuplex, bytes: number): Promise<Omit<EchoReport, 'setupMs'>> {
  const sentHash = createHash('sha256');
  const receivedHash = createHash('sha256');
  let received = 0;
  const started = Date.now();
  let endedAt = 0;
  stream.on('data', (chunk: Buffer) => {
    received += chunk.length;
    receivedHash.update(chunk);
  });
  stream.once('end', () => (endedAt = Date.now()));
  const done = finished(stream);
  done.catch(() => undefined);

  for (let sent = 0; sent < bytes && !stream.destroyed; ) {
    const chunk = randomBytes(Math.min(CHUNK, bytes - sent));
    sentHash.update(chunk);
    sent += chunk.length;
    if (!stream.write(chunk)) await drainOrClose(stream);
  }
  if (!stream.destroyed) stream.end();
  await done;
  return {
    sent: bytes,
    received,
    sentSha256: sentHash.digest('hex'),
    receivedSha256: receivedHash.digest('hex'),
    roundTripMs: (endedAt || Date.now()) - started,
  };
}

function drainOrClose(stream: WsDuplex): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

/**
 * `devstreams echo DEVICE [--bytes N] [--service echo]`: prints
 * `echo ok: N bytes, set-up X ms, round trip Y ms` and exits 0; a refusal, a failed stream, a
 * short read or a mismatch is one line on stderr and exit 1.
 */
export async function runEcho(
  ctx: ServiceContext,
  device: string,
  service: string,
  bytes: number,
  timeoutMs: number | undefined,
  /** Every `everyMs` while it runs, a line of how far it is (the CLI: every 2 s on a terminal). */
  progress?: { everyMs: number; line: (text: string) => void },
): Promise<number> {
  const t0 = Date.now();
  const stream = await openOrReport(ctx, device, service, () =>
    ctx.client.openStream(device, service, timeoutMs !== undefined ? { timeoutMs } : {}),
  );
  ctx.client.close();
  if (!stream) return 1;
  const setupMs = Date.now() - t0;
  let r: Omit<EchoReport, 'setupMs'>;
  const started = Date.now();
  const ticker = progress
    ? setInterval(() => {
        const s = (Date.now() - started) / 1000;
        progress.line(`echo ${device}/${service}: ${mb(stream.bytesOut)} of ${mb(bytes)} sent, ${mb(stream.bytesIn)} back, ${mb(stream.bytesIn / s)}/s`);
      }, progress.everyMs)
    : undefined;
  try {
    r = await echoRoundTrip(stream, bytes);
  } catch (err) {
    ctx.err(streamFailedLine(device, service, err as Error, ` after ${stream.bytesOut} of ${bytes} bytes sent, ${stream.bytesIn} received`));
    return 1;
  } finally {
    clearInterval(ticker);
  }
  if (r.received !== r.sent) {
    ctx.err(`devstreams: echo ${device}/${service}: ${r.received < r.sent ? 'short read' : 'too many bytes'}: sent ${r.sent} bytes, received ${r.received}`);
    return 1;
  }
  if (r.receivedSha256 !== r.sentSha256) {
    ctx.err(`devstreams: echo ${device}/${service}: data mismatch: ${r.sent} bytes each way, sha256 sent ${r.sentSha256.slice(0, 16)}, received ${r.receivedSha256.slice(0, 16)}`);
    return 1;
  }
  ctx.out(`echo ok: ${r.sent} bytes, set-up ${setupMs} ms, round trip ${r.roundTripMs} ms\n`);
  return 0;
}

/** Bytes as MB (10^6) with one decimal. */
function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}
