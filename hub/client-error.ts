import type { Duplex } from 'node:stream';
import { errorBody, rawJsonResponse } from './http-util.js';

/**
 * The https server's 'clientError' handler: a request Node's HTTP parser cannot read (malformed,
 * headers too large, too slow) gets the API's JSON error body naming the problem, then the
 * connection is closed. Node's default answer has no body.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const code = err.code ?? '';
  // A response is already on its way on this connection, or the peer is gone: nothing safe to write.
  const inFlight = (socket as Duplex & { _httpMessage?: unknown })._httpMessage;
  if (code === 'ECONNRESET' || !socket.writable || inFlight) {
    socket.destroy();
    return;
  }
  let status = 400;
  let reason = `malformed HTTP request (${code.replace(/^HPE_/, '').toLowerCase() || 'parse error'})`;
  if (code === 'HPE_HEADER_OVERFLOW') {
    status = 431;
    reason = 'request headers too large';
  } else if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    reason = 'request not received in time (limits.authTimeoutMs)';
  }
  socket.end(rawJsonResponse(status, errorBody('BAD_REQUEST', reason, status)));
  socket.once('finish', () => socket.destroy());
}
