import { LIMITS } from './limits.js';

/** A device id is one MQTT topic level and one file name: letters, digits, dot, dash, underscore. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A service name in an allowlist. */
export const SERVICE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,31}$/;
/** Stream ids are 128 random bits, base64url. */
export const STREAM_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;

export function isDeviceId(value: string): boolean {
  return value.length <= LIMITS.maxDeviceIdLength && DEVICE_ID_PATTERN.test(value) && value !== '.' && value !== '..';
}

/**
 * A service spec as a request carries it: an allowlist entry's name, `PORT`, or `HOST:PORT`
 * (`[v6addr]:PORT` for IPv6). Parsing never resolves anything; matching happens in the agent.
 */
export type ServiceSpec =
  | { kind: 'name'; name: string }
  | { kind: 'port'; port: number }
  | { kind: 'hostPort'; host: string; port: number };

export function parseServiceSpec(spec: string): ServiceSpec | null {
  if (spec.length === 0 || spec.length > LIMITS.maxServiceSpecLength) return null;
  if (/^\d{1,5}$/.test(spec)) {
    const port = Number(spec);
    return port >= 1 && port <= 65535 ? { kind: 'port', port } : null;
  }
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(spec);
  if (m) {
    const port = Number(m[3]);
    if (port < 1 || port > 65535) return null;
    return { kind: 'hostPort', host: (m[1] ?? m[2]!).toLowerCase(), port };
  }
  if (spec.length <= LIMITS.maxServiceNameLength && SERVICE_NAME_PATTERN.test(spec)) return { kind: 'name', name: spec };
  return null;
}
