import type { WebSocket } from 'ws';

/**
 * Dead-peer detection on a stream WebSocket (agent, relay and SDK sides alike): a ping every
 * `intervalMs`; a side that has heard nothing from its peer (no frame of any kind: data, ping or
 * pong) for a whole interval terminates the socket, so a vanished peer is noticed within two
 * intervals. A socket this side has paused itself (backpressure: its reader is slow) is not
 * judged, since the peer's frames wait unread in TCP buffers; it keeps pinging so the peer still
 * hears it. Stops by itself when the socket closes; returns a function that stops it earlier.
 */
export function startHeartbeat(ws: WebSocket, intervalMs: number): () => void {
  if (!(intervalMs > 0)) return () => {};
  let heard = true;
  const onHeard = (): void => {
    heard = true;
  };
  const timer = setInterval(() => {
    if (ws.readyState !== ws.OPEN) return stop();
    if (!heard && !ws.isPaused) {
      stop();
      ws.terminate(); // 'close' follows with 1006: the peer is gone
      return;
    }
    heard = false;
    try {
      ws.ping();
    } catch {
      // the socket is closing; 'close' follows
    }
  }, intervalMs);
  timer.unref();
  const stop = (): void => {
    clearInterval(timer);
    ws.off('message', onHeard);
    ws.off('ping', onHeard);
    ws.off('pong', onHeard);
    ws.off('close', stop);
  };
  ws.on('message', onHeard);
  ws.on('ping', onHeard);
  ws.on('pong', onHeard);
  ws.once('close', stop);
  return stop;
}
