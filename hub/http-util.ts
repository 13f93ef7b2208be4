import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  DevstreamsError,
  ERRORS,
  LIMITS,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  type ApiError,
  type ErrorCode,
} from '../protocol/index.js';
import { RetryableError } from './retryable-error.js';

/** JSON answers and refusals, all with the protocol header; errors as ApiErrorSchema. */

export function errorBody(code: ErrorCode, reason: string, status: number = ERRORS[code].http): ApiError {
  return { error: { code, status, reason } };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
    ...headers,
  });
  res.end(text);
}

/**
 * An error answer. `err`, when the error is a thrown one, lends its retry hint: a 429 carries
 * `Retry-After` (seconds), a 426 `Upgrade: websocket`.
 */
export function sendError(res: ServerResponse, code: ErrorCode, reason: string, status?: number, err?: unknown): void {
  const body = errorBody(code, reason, status);
  sendJson(res, body.error.status, body, Object.fromEntries(hintHeaders(code, err)));
}

/**
 * Refuses a WebSocket upgrade before it happens: a plain HTTP answer with the JSON error body on
 * the raw socket, then the socket is closed. `err` as for sendError.
 */
export function refuseUpgrade(socket: Duplex, code: ErrorCode, reason: string, err?: unknown): void {
  const status = ERRORS[code].http;
  const extra = hintHeaders(code, err).map(([k, v]) => `${k}: ${v}`);
  if (socket.writable) socket.end(rawJsonResponse(status, errorBody(code, reason), extra));
  else socket.destroy();
}

/** Seconds a 429 without a hint of its own (a device's limit) suggests waiting. */
const DEFAULT_RETRY_AFTER_SEC = 1;

/** The headers that tell a client what to do next: 426 names the upgrade it wants, 429 when to retry. */
function hintHeaders(code: ErrorCode, err: unknown): [string, string][] {
  if (code === 'VERSION_MISMATCH') return [['Upgrade', 'websocket']];
  if (code === 'LIMIT_EXCEEDED') {
    const sec = err instanceof RetryableError ? err.retryAfterSec : DEFAULT_RETRY_AFTER_SEC;
    return [['Retry-After', String(sec)]];
  }
  return [];
}

/** A whole HTTP/1.1 answer with a JSON body, for writing on a raw socket (no ServerResponse there). */
export function rawJsonResponse(status: number, body: unknown, extraHeaders: string[] = []): string {
  const text = JSON.stringify(body);
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(text)}`,
    `${PROTOCOL_HEADER}: ${PROTOCOL_VERSION}`,
    'Connection: close',
    ...extraHeaders,
  ];
  return `${head.join('\r\n')}\r\n\r\n${text}`;
}

/**
 * Reads a JSON request body of at most LIMITS.maxApiBodyBytes. Throws DevstreamsError:
 * PAYLOAD_TOO_LARGE (413) or BAD_REQUEST (400, not JSON).
 */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const limit = LIMITS.maxApiBodyBytes;
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    throw new DevstreamsError('PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new DevstreamsError('PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new DevstreamsError('BAD_REQUEST', 'request body is empty; expected JSON');
  try {
    return JSON.parse(text);
  } catch {
    throw new DevstreamsError('BAD_REQUEST', 'request body is not valid JSON');
  }
}

/** The peer of a request's connection, `address:port` ([v6]:port), for the lines that log who tried. */
export function peerAddress(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  const a = socket.remoteAddress ?? 'unknown';
  return `${a.includes(':') ? `[${a}]` : a}:${socket.remotePort ?? 0}`;
}
