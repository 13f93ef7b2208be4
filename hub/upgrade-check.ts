import type { IncomingMessage } from 'node:http';
import { WS_SUBPROTOCOL } from '../protocol/index.js';

/**
 * Checks a WebSocket upgrade request the way `ws` will (RFC 6455 section 4.2.1), so that the hub
 * can refuse a malformed one with its own JSON error before anything changes (a relay token is
 * only spent on an upgrade that will succeed), instead of ws's bare-text 400.
 */

const KEY = /^[+/0-9A-Za-z]{22}==$/;
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;

/** The problem with this upgrade request, or null when `ws` will accept it. */
export function upgradeProblem(req: IncomingMessage): string | null {
  if (req.method !== 'GET') return `a WebSocket upgrade must use GET, not ${String(req.method).slice(0, 16)}`;
  const upgrade = req.headers.upgrade;
  if (typeof upgrade !== 'string' || upgrade.toLowerCase() !== 'websocket') return 'Upgrade header must be "websocket"';
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY.test(key)) return 'missing or invalid Sec-WebSocket-Key header';
  const version = Number(req.headers['sec-websocket-version']);
  if (version !== 13 && version !== 8) return 'Sec-WebSocket-Version must be 13';
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols !== undefined && parseSubprotocols(protocols) === null) return 'invalid Sec-WebSocket-Protocol header';
  return null;
}

/**
 * The problem with a stream WebSocket upgrade (a relay dial, an open-and-connect, a multiplexed
 * connection): malformed (400), or without one of the endpoint's subprotocols (426); null when it may go on.
 */
export function streamUpgradeProblem(
  req: IncomingMessage,
  subprotocols: string | readonly string[] = WS_SUBPROTOCOL,
): { code: 'BAD_REQUEST' | 'VERSION_MISMATCH'; reason: string } | null {
  const problem = upgradeProblem(req);
  if (problem) return { code: 'BAD_REQUEST', reason: problem };
  const header = req.headers['sec-websocket-protocol'];
  const offered = header !== undefined ? parseSubprotocols(header) : null;
  const spoken = typeof subprotocols === 'string' ? [subprotocols] : subprotocols;
  if (!spoken.some((p) => offered?.has(p))) {
    return { code: 'VERSION_MISMATCH', reason: `the relay speaks WebSocket subprotocol ${spoken.join(' or ')} here` };
  }
  return null;
}

/**
 * Parses a Sec-WebSocket-Protocol header exactly as ws 8 does (comma-separated tokens, optional
 * spaces or tabs around commas, no duplicates); null when ws would refuse it.
 */
export function parseSubprotocols(header: string): Set<string> | null {
  const protocols = new Set<string>();
  let start = -1;
  let end = -1;
  let i = 0;
  for (; i < header.length; i++) {
    const c = header[i]!;
    if (end === -1 && TCHAR.test(c)) {
      if (start === -1) start = i;
    } else if (i !== 0 && (c === ' ' || c === '\t')) {
      if (end === -1 && start !== -1) end = i;
    } else if (c === ',') {
      if (start === -1) return null;
      if (end === -1) end = i;
      const p = header.slice(start, end);
      if (protocols.has(p)) return null;
      protocols.add(p);
      start = end = -1;
    } else {
      return null;
    }
  }
  if (start === -1 || end !== -1) return null;
  const p = header.slice(start, i);
  if (protocols.has(p)) return null;
  protocols.add(p);
  return protocols;
}
