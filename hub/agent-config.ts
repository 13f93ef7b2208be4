import { isIP } from 'node:net';
import { DevstreamsError, SERVICE_NAME_PATTERN, apiPaths } from '../protocol/index.js';

/**
 * The agent config `hub add-device` writes (the format of DESIGN "The agent's allowlist" and
 * agent/config.ts): `hub: {url, deviceId, keyFile, ca}`, `allow: [...]`, `limits`, `log`.
 */

export type AllowEntry = { name: string; host?: string; port: number } | { name: string; builtin: 'echo' };

const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})?)*$/;

/** Parses one `--allow` flag: `echo`, or `NAME=PORT`, `NAME=HOST:PORT`, `NAME=[V6]:PORT`. */
export function parseAllowFlag(flag: string): AllowEntry {
  if (flag === 'echo') return { name: 'echo', builtin: 'echo' };
  const bad = (why: string): DevstreamsError =>
    new DevstreamsError('BAD_REQUEST', `--allow ${flag}: ${why} (expected NAME=[HOST:]PORT or echo, e.g. ssh=22 or plc=192.168.1.50:502)`);
  const eq = flag.indexOf('=');
  if (eq < 0) throw bad('missing "="');
  const name = flag.slice(0, eq);
  const target = flag.slice(eq + 1);
  if (!SERVICE_NAME_PATTERN.test(name) || /^\d+$/.test(name)) {
    throw bad(`"${name}" is not a service name (up to 32 lowercase letters, digits, ".", "-", "_"; not only digits)`);
  }
  const m = /^(?:(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):)?(\d{1,5})$/.exec(target);
  if (!m) throw bad(`"${target}" is not [HOST:]PORT`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw bad(`port ${port} is out of range 1-65535`);
  const host = m[1] ?? m[2];
  if (host !== undefined) {
    if (m[1] !== undefined ? isIP(host) !== 6 : !(isIP(host) === 4 || HOST.test(host))) throw bad(`"${host}" is not a host name or address`);
    return { name, host: host.toLowerCase(), port };
  }
  return { name, port };
}

/** wss://HOST[:PORT]/mqtt from the hub's public https URL. */
export function mqttUrlOf(publicUrl: URL): string {
  const u = new URL(publicUrl.href);
  u.protocol = 'wss:';
  u.pathname = apiPaths.mqtt;
  return u.href;
}

const q = (s: string): string => JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar

function allowLine(e: AllowEntry): string {
  if ('builtin' in e) return `  - { name: ${q(e.name)}, builtin: ${e.builtin} }`;
  return `  - { name: ${q(e.name)}, ${e.host !== undefined ? `host: ${q(e.host)}, ` : ''}port: ${e.port} }`;
}

export function agentConfigYaml(opts: {
  deviceId: string;
  mqttUrl: string;
  keyFile: string;
  caFile?: string;
  allow: AllowEntry[];
  /** External broker (docs/SCALE.md): the broker checks the key itself, and relays live on the hub nodes' hosts. */
  external?: { relayHosts: string[] };
}): string {
  const allow =
    opts.allow.length > 0
      ? opts.allow.map(allowLine)
      : [
          '  - { name: echo, builtin: echo }          # the built-in echo service, for `devstreams echo`',
          '  # - { name: ssh, port: 22 }              # host defaults to 127.0.0.1',
          '  # - { name: web, port: 8080 }',
          '  # - { name: plc, host: 192.168.1.50, port: 502 }',
        ];
  return [
    `# devstreams agent configuration for device ${q(opts.deviceId)}, written by \`devstreams hub add-device\`.`,
    `# Copy this file, ${opts.keyFile}${opts.caFile ? ` and ${opts.caFile}` : ''} to the device (e.g. /etc/devstreams/) and run`,
    '# `devstreams agent --config FILE`. Relative paths resolve against this file\'s folder.',
    'hub:',
    `  url: ${q(opts.mqttUrl)}`,
    `  deviceId: ${q(opts.deviceId)}`,
    `  keyFile: ${q(opts.keyFile)}`,
    ...(opts.caFile ? [`  ca: ${q(opts.caFile)}`] : []),
    ...(opts.external
      ? [
          '  auth: key                                   # the external broker checks the device key itself',
          `  relayHosts: [${opts.external.relayHosts.map(q).join(', ')}]   # the hub nodes that serve streams`,
        ]
      : []),
    'allow:                                        # deny everything else',
    ...allow,
    'limits:',
    '  maxStreams: 16',
    'log:',
    '  level: info',
    '',
  ].join('\n');
}
