import { isIP } from 'node:net';

/**
 * Plain text (ws:, http:) is only ever allowed to a loopback address (DESIGN "Security model").
 * Loopback: `localhost`, 127.0.0.0/8, ::1 (with or without brackets) and ::ffff:127.x.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^(?:0{0,4}:){1,7}0{0,3}1$/.test(h) || /^::ffff:127\./.test(h);
  return false;
}

/** True for a plain-text URL scheme (ws:, http:, mqtt:). */
export function isPlaintextScheme(protocol: string): boolean {
  return protocol === 'ws:' || protocol === 'http:' || protocol === 'mqtt:';
}
