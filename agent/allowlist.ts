import { DevstreamsError, parseServiceSpec } from '../protocol/index.js';
import type { AllowEntry } from './config.js';

/**
 * The device's policy: which local services a stream may reach. Deny by default. A request names an
 * entry's `name`, or `PORT` / `HOST:PORT` matching an entry's host and port exactly; nothing is
 * resolved or dialled here.
 */
export class Allowlist {
  private readonly entries: readonly AllowEntry[];

  constructor(entries: readonly AllowEntry[]) {
    this.entries = entries;
  }

  get size(): number {
    return this.entries.length;
  }

  /**
   * The entry a service spec names. Throws DevstreamsError: BAD_REQUEST when the spec is not well
   * formed, SERVICE_DENIED when it names nothing on the list.
   */
  resolve(spec: string): AllowEntry {
    const parsed = parseServiceSpec(spec);
    if (!parsed) {
      throw new DevstreamsError('BAD_REQUEST', `service "${printable(spec)}" is not a name, PORT or HOST:PORT`);
    }
    let found: AllowEntry | undefined;
    switch (parsed.kind) {
      case 'name':
        found = this.entries.find((e) => e.name === parsed.name);
        break;
      case 'port':
        found = this.entries.find((e) => e.kind === 'tcp' && e.port === parsed.port && isDefaultHost(e.host));
        break;
      case 'hostPort':
        found = this.entries.find((e) => e.kind === 'tcp' && e.port === parsed.port && sameHost(e.host, parsed.host));
        break;
    }
    if (!found) throw new DevstreamsError('SERVICE_DENIED', `service "${spec}" is not allowed on this device`);
    return found;
  }
}

/**
 * `PORT` names a service on this device itself, so it matches only entries on the loopback address
 * (the default host); a LAN target must be asked for by name or HOST:PORT.
 */
function isDefaultHost(host: string): boolean {
  return host === '127.0.0.1';
}

function sameHost(entryHost: string, specHost: string): boolean {
  return entryHost.toLowerCase().replace(/\.$/, '') === specHost.toLowerCase().replace(/\.$/, '');
}

/** A spec echoed back in a reason: bounded, control characters replaced. */
function printable(s: string): string {
  const cut = s.length > 64 ? `${s.slice(0, 64)}...` : s;
  return cut.replace(/[^\x20-\x7e]/g, '?');
}
