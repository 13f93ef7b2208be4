import type { Readable, Writable } from 'node:stream';
import { bridge, sharedReadSocket, type WsDuplex } from '../protocol/index.js';
import { openOrReport, type ServiceContext } from './context.js';
import { streamFailedLine } from './errors.js';
import { StdioDuplex } from './stdio-duplex.js';
import { widenPipes } from './stdio-pipes.js';

/** The longest connect waits, once its stream has ended, for its WebSocket's close to complete. */
const CLOSE_WAIT_MS = 1000;

/** The signals that end a `connect` session as its user's doing (see endOnSignals). */
export const ENDING_SIGNALS = ['SIGHUP', 'SIGTERM', 'SIGINT'] as const;

/**
 * `devstreams connect DEVICE SERVICE`: bridges stdin/stdout to one stream, so
 * `ssh -o ProxyCommand='devstreams connect %h ssh' user@DEVICE` works. Nothing but stream bytes
 * goes to stdout. Exit 0 when the stream ended cleanly (EOF both ways), 1 otherwise; a reader of
 * stdout that went away ends it with 1 and no line.
 *
 * `stop` (the CLI's: SIGHUP, SIGTERM, SIGINT) ends the session as its user's: OpenSSH ends its
 * ProxyCommand with SIGHUP when the session is over, so that is how every ssh login through
 * connect ends. The stream is closed normally (1000, which the hub records as `ok`), connect waits
 * at most CLOSE_WAIT_MS for the close to go out and exits 0. A stop before the stream is open
 * cancels the request: exit 1, no line.
 */
export async function runConnect(
  ctx: ServiceContext,
  device: string,
  service: string,
  timeoutMs: number | undefined,
  stdio?: { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream },
  stop?: AbortSignal,
): Promise<number> {
  let stream: WsDuplex | null;
  try {
    stream = await openOrReport(ctx, device, service, () =>
      ctx.client.openStream(device, service, { ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(stop ? { signal: stop } : {}) }),
    );
  } catch (err) {
    if (stop?.aborted) return 1; // the user gave up while it was being opened
    throw err;
  } finally {
    ctx.client.close();
  }
  if (!stream) return 1;
  const opened = stream;
  let stopped = false;
  const onStop = (): void => {
    stopped = true;
    opened.destroy(); // no error: a normal close (1000), and the bridge ends standard input and output
  };
  if (stop?.aborted) onStop();
  else stop?.addEventListener('abort', onStop, { once: true });
  const log = ctx.log.child({ device, service });
  if (!stdio) log.debug({ pipes: widenPipes() }, 'standard input and output');
  const { stdin, stdout } = stdio ?? { stdin: standardInput(), stdout: process.stdout };
  const local = new StdioDuplex(stdin as Readable, stdout as Writable);
  const result = await bridge(stream, local, log, { a: 'device', b: 'stdio' });
  // A signal from here on comes after the stream ended, cleanly or not: its outcome stands.
  stop?.removeEventListener('abort', onStop);
  // The process exits next: let the close frame leave first, so the hub records the code it was sent.
  await Promise.race([stream.whenClosed(), new Promise((r) => setTimeout(r, CLOSE_WAIT_MS).unref())]);
  if (stopped) return 0; // the bridge saw its device side closed under it: that was this side's doing
  if (result.error) {
    // The reader of standard output went away (`connect ... | head -c 20`, or ssh that ended): the
    // stream ends as it would have, quietly, as other tools end on a closed pipe.
    if (!readerGone(result.error, result.failedSide)) ctx.err(streamFailedLine(device, service, result.error));
    return 1;
  }
  return 0;
}

/**
 * An AbortSignal that aborts on the first of ENDING_SIGNALS, for runConnect's `stop`. With the
 * handlers in place Node no longer dies at once on these signals (which left the hub a WebSocket
 * gone without a close: `error PEER_GONE "closed with 1006"` for every ssh login); a second signal
 * changes nothing, the close wait being bounded.
 */
export function endOnSignals(): AbortSignal {
  const ac = new AbortController();
  for (const sig of ENDING_SIGNALS) process.on(sig, () => ac.abort(new Error(`connect ended by ${sig}`)));
  return ac.signal;
}

function readerGone(err: Error, side: 'a' | 'b' | undefined): boolean {
  return side === 'b' && (err as NodeJS.ErrnoException).code === 'EPIPE';
}

/**
 * Standard input as Node makes `process.stdin` for a pipe or a socket (ssh gives its ProxyCommand
 * pipes), but reading into the process's one read buffer (protocol/tcp-read-buffer.ts): Node's own
 * allocates a new 64 KiB read slab for every keystroke read. A terminal or a file is not a socket
 * (the constructor throws before anything is opened): then `process.stdin`, as it is.
 */
export function standardInput(fd = 0): NodeJS.ReadableStream {
  try {
    return sharedReadSocket({ fd, readable: true, writable: false, manualStart: true });
  } catch {
    return process.stdin;
  }
}
