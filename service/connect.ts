import { Duplex } from 'node:stream';
import { bridge } from '../protocol/index.js';
import { openOrReport, type ServiceContext } from './context.js';
import { streamFailedLine } from './errors.js';

/**
 * `devstreams connect DEVICE SERVICE`: bridges stdin/stdout to one stream, so
 * `ssh -o ProxyCommand='devstreams connect %h ssh' user@DEVICE` works. Nothing but stream bytes
 * goes to stdout. Exit 0 when the stream ended cleanly (EOF both ways), 1 otherwise.
 */
export async function runConnect(
  ctx: ServiceContext,
  device: string,
  service: string,
  timeoutMs: number | undefined,
  stdio: { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream } = { stdin: process.stdin, stdout: process.stdout },
): Promise<number> {
  const stream = await openOrReport(ctx, device, service, () =>
    ctx.client.openStream(device, service, timeoutMs !== undefined ? { timeoutMs } : {}),
  );
  ctx.client.close();
  if (!stream) return 1;
  const local = Duplex.from({ readable: stdio.stdin, writable: stdio.stdout });
  const log = ctx.log.child({ device, service });
  const result = await bridge(stream, local, log, { a: 'device', b: 'stdio' });
  if (result.error) {
    ctx.err(streamFailedLine(device, service, result.error));
    return 1;
  }
  return 0;
}
