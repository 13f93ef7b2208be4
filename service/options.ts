import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { argsProblem, ConfigError } from '../protocol/index.js';

/** A bad command line or environment: one line, exit status 2. */
export class UsageError extends ConfigError {
  constructor(message: string) {
    super('usage', [message]);
    this.name = 'UsageError';
    this.message = message;
  }
}

/** The options every service-side command takes. */
export const HUB_OPTIONS = {
  hub: { type: 'string' },
  token: { type: 'string' },
  ca: { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

export interface HubSettings {
  hub: string;
  token: string;
  /** PEM text of the CA file, if one was named. */
  ca?: string;
  caFile?: string;
}

type Env = Record<string, string | undefined>;

/**
 * The hub URL, token and CA from flags or the environment (flags win). A missing value names both
 * the flag and the variable; an unreadable CA file is named. The token itself is never in a message.
 */
export function resolveHubSettings(
  flags: { hub?: string | undefined; token?: string | undefined; ca?: string | undefined },
  env: Env = process.env,
): HubSettings {
  const hub = pick(flags.hub, env.DEVSTREAMS_HUB);
  if (!hub) throw new UsageError('no hub given: pass --hub URL or set DEVSTREAMS_HUB');
  let url: URL;
  try {
    url = new URL(hub);
  } catch {
    throw new UsageError(`hub URL ${JSON.stringify(hub)} is not a URL (--hub / DEVSTREAMS_HUB)`);
  }
  if (url.protocol !== 'https:') {
    throw new UsageError(`hub URL must start with https:// (got ${url.protocol}) (--hub / DEVSTREAMS_HUB)`);
  }
  // The hub serves its API at /api/v1 of its own origin (hub.yaml's url has no path either): a URL
  // copied from `devstreams endpoints` would otherwise get "no such API route: GET /api/v1/api/v1/...".
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    const extra = `${url.pathname === '/' ? '' : url.pathname}${url.search}${url.hash}`;
    throw new UsageError(`hub URL is the hub's base URL, https://HOST[:PORT], with no path (drop ${JSON.stringify(extra)}) (--hub / DEVSTREAMS_HUB)`);
  }

  const token = pick(flags.token, env.DEVSTREAMS_TOKEN);
  if (!token) throw new UsageError('no service token given: pass --token TOKEN or set DEVSTREAMS_TOKEN');
  if (!/^[\x21-\x7e]{1,512}$/.test(token)) {
    throw new UsageError('the service token (--token / DEVSTREAMS_TOKEN) has spaces, control characters or is too long');
  }

  const caFile = pick(flags.ca, env.DEVSTREAMS_CA);
  if (!caFile) return { hub, token };
  return { hub, token, ca: readCaFile(caFile), caFile };
}

function pick(flag: string | undefined, env: string | undefined): string | undefined {
  if (flag !== undefined && flag !== '') return flag;
  return env !== undefined && env !== '' ? env : undefined;
}

/** Reads a PEM CA bundle; a file that cannot be read or holds no certificate is a ConfigError naming it. */
export function readCaFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read CA file (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) {
    throw new ConfigError(file, ['CA file holds no PEM certificate (-----BEGIN CERTIFICATE-----)']);
  }
  return text;
}

/**
 * `parseArgs` for one command, with its parse errors turned into UsageErrors naming the command.
 * `positionals` lists the names of the required positional arguments, in order.
 */
export function parseCommand<O extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: O,
  positionals: string[],
): { values: ReturnType<typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>>['values']; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${command}: ${argsProblem(err)} (see devstreams ${command} --help)`);
  }
  const help = (parsed.values as { help?: boolean }).help === true;
  if (!help) {
    if (parsed.positionals.length < positionals.length) {
      throw new UsageError(`${command}: missing ${positionals.slice(parsed.positionals.length).join(' ')} (see devstreams ${command} --help)`);
    }
    if (parsed.positionals.length > positionals.length) {
      throw new UsageError(`${command}: unexpected argument ${JSON.stringify(parsed.positionals[positionals.length])}`);
    }
  }
  return { values: parsed.values, positionals: parsed.positionals };
}

/** A positive integer flag (e.g. --timeout, --bytes), or the default. */
export function intOption(name: string, value: string | undefined, dflt: number | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
  }
  return Number(value);
}

/** `[HOST:]PORT` (`[v6addr]:PORT` for IPv6); HOST defaults to 127.0.0.1. Port 0 picks a free port. */
export function parseListen(spec: string): { host: string; port: number } {
  const m = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):)?(\d{1,5})$/.exec(spec);
  if (!m) throw new UsageError(`--listen must be [HOST:]PORT (got ${JSON.stringify(spec)})`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen port must be from 0 to 65535 (got ${JSON.stringify(spec)})`);
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}
