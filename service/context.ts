import { createLogger, type Logger } from '../protocol/index.js';
import { DevstreamsClient } from './client.js';
import { HubRefusalError, refusedLine } from './errors.js';
import { resolveHubSettings } from './options.js';

/** Where a user of the commands sets the hub's CA, for TLS trust failures. */
export const CLI_CA_SOURCE = '--ca / DEVSTREAMS_CA';

/** What every service-side command works with: a client for the hub, a stderr logger, its output. */
export interface ServiceContext {
  client: DevstreamsClient;
  log: Logger;
  /** Writes to stdout (stream bytes for `connect`, results otherwise). */
  out: (text: string) => void;
  /** Writes one line to stderr. */
  err: (line: string) => void;
}

export interface CommonFlags {
  hub?: string | undefined;
  token?: string | undefined;
  ca?: string | undefined;
  verbose?: boolean | undefined;
}

/** Builds the context from the common flags and the environment. No I/O but reading the CA file. */
export function makeContext(
  flags: CommonFlags,
  env: Record<string, string | undefined> = process.env,
  opts: { multiplex?: boolean } = {},
): ServiceContext {
  const settings = resolveHubSettings(flags, env);
  // Logs go to stderr: stdout may carry stream bytes. Warn by default, info with --verbose.
  const log = createLogger({ name: 'devstreams', level: flags.verbose ? 'info' : 'warn', destination: 2 });
  const client = new DevstreamsClient({
    hub: settings.hub,
    token: settings.token,
    ...(settings.ca !== undefined ? { ca: settings.ca } : {}),
    caSource: CLI_CA_SOURCE,
    logger: log,
    ...(opts.multiplex !== undefined ? { multiplex: opts.multiplex } : {}),
  });
  return {
    client,
    log,
    out: (text) => void process.stdout.write(text),
    err: (line) => void process.stderr.write(`${line}\n`),
  };
}

/**
 * Runs `open` and reports a refusal as the one documented line; returns null then (the command
 * exits 1). Other errors propagate to the dispatcher.
 */
export async function openOrReport<T>(
  ctx: ServiceContext,
  device: string,
  service: string,
  open: () => Promise<T>,
): Promise<T | null> {
  try {
    return await open();
  } catch (err) {
    if (err instanceof HubRefusalError) {
      ctx.err(refusedLine(device, service, err));
      return null;
    }
    throw err;
  }
}
