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

/** JSON answers and refusals, all with the protocol header; errors as ApiErrorSchema. */

export function errorBody(code: ErrorCode, reason: string, status: number = ERRORS[code].http): ApiError {
  return { error: { code, status, reason } };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
  });
  res.end(text);
}

export function sendError(res: ServerResponse, code: ErrorCode, reason: string, status?: number): void {
  const body = errorBody(code, reason, status);
  sendJson(res, body.error.status, body);
}

/**
 * Refuses a WebSocket upgrade before it happens: a plain HTTP answer with the JSON error body on
 * the raw socket, then the socket is closed.
 */
export function refuseUpgrade(socket: Duplex, code: ErrorCode, reason: string): void {
  const status = ERRORS[code].http;
  // 426 names the upgrade it wants
  const extra = code === 'VERSION_MISMATCH' ? ['Upgrade: websocket'] : [];
  if (socket.writable) socket.end(rawJsonResponse(status, errorBody(code, reason), extra));
  else socket.destroy();
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
