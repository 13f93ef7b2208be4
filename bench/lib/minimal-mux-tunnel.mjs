// The floor of a multiplexed design, to weigh it before building it (issue 6): what Node, ws and TLS
// cost when every stream of a side shares one WebSocket, instead of a TLS connection and a
// WebSocket per stream as in devstreams and bench/lib/minimal-tunnel.mjs. The agent and the service
// side each keep one wss:// connection to the relay; a stream is a stream id in a 5-byte header on
// each message, opened by a message, with per-stream flow control (credits, an 8 MiB window), so that a stream whose
// reader is slow stops only itself. Same TLS, dev CA, ws options and backpressure as the minimal
// tunnel; nothing of devstreams' checks. The relay forwards each message to the other side as it
// is (one service side here: a real relay would map stream ids per connection, a Map lookup).
//
//   node bench/lib/minimal-mux-tunnel.mjs relay CERT KEY            -> "listening PORT"
//   node bench/lib/minimal-mux-tunnel.mjs agent CA RELAY_PORT TARGET_PORT -> "ready"
//   node bench/lib/minimal-mux-tunnel.mjs service CA RELAY_PORT     -> "listening PORT"
import https from 'node:https';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { WebSocket, WebSocketServer } from 'ws';
import { forward, setUpProcess, wsOptions } from './minimal-common.mjs';

// Bytes a stream may have in flight unacknowledged: 8 MiB, the most devstreams' window grows to
// (protocol/mux-window.ts), fixed here, the least code for it. With 1 MiB (the floor until the ninth
// round) one stream moved 103-104 / 120-126 MB/s up / down, with 8 MiB 134-147 / 143-145 (`node
// bench/per-process.mjs minimal-mux --mib 256`, alternating).
const WINDOW = 8 << 20;
const CREDIT_EVERY = WINDOW / 4; // a receiver acknowledges consumed bytes in batches of this
const OPEN = 1, OPENED = 2, DATA = 3, END = 4, CLOSE = 5, CREDIT = 6;

const [role, ...args] = process.argv.slice(2);
setUpProcess(role);

function frame(type, id, payload) {
  const b = Buffer.allocUnsafe(5 + (payload ? payload.length : 0));
  b[0] = type;
  b.writeUInt32BE(id, 1);
  if (payload) payload.copy(b, 5);
  return b;
}

/** One side's end of the multiplexed connection: its streams, each bridged to a TCP socket. */
class Mux {
  constructor(ws, onOpen) {
    this.ws = ws;
    this.streams = new Map();
    this.onOpen = onOpen; // (id) => void: the peer asks for a stream (agent side)
    ws.on('message', (m) => this.onMessage(m));
  }
  send(b) {
    this.ws.send(b);
  }
  /** Bridges `sock` as stream `id`: TCP -> messages within the stream's credit, messages -> TCP. */
  attach(id, sock) {
    const st = { sock, credit: WINDOW, consumed: 0 };
    this.streams.set(id, st);
    sock.on('data', (d) => {
      this.send(frame(DATA, id, d));
      st.credit -= d.length;
      if (st.credit <= 0) sock.pause();
    });
    sock.on('end', () => this.send(frame(END, id)));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      if (this.streams.delete(id)) this.send(frame(CLOSE, id));
    });
    return st;
  }
  onMessage(m) {
    const type = m[0];
    const id = m.readUInt32BE(1);
    if (type === OPEN) return this.onOpen(id);
    const st = this.streams.get(id);
    if (!st) return;
    if (type === DATA) {
      const n = m.length - 5;
      st.sock.write(m.subarray(5), () => {
        st.consumed += n;
        if (st.consumed >= CREDIT_EVERY && this.streams.has(id)) {
          const c = Buffer.allocUnsafe(4);
          c.writeUInt32BE(st.consumed);
          st.consumed = 0;
          this.send(frame(CREDIT, id, c));
        }
      });
    } else if (type === CREDIT) {
      st.credit += m.readUInt32BE(5);
      if (st.credit > 0 && st.sock.isPaused()) st.sock.resume();
    } else if (type === END) {
      st.sock.end();
    } else if (type === CLOSE) {
      this.streams.delete(id);
      st.sock.destroy();
    } else if (type === OPENED) {
      st.onOpened?.();
    }
  }
}

if (role === 'relay') {
  const [cert, key] = args;
  const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) });
  const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: false });
  let agent;
  wss.on('connection', (ws, req) => {
    if (req.url === '/agent') return void (agent = ws);
    forward(ws, agent);
    forward(agent, ws);
  });
  server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
} else if (role === 'agent') {
  const [ca, relayPort, targetPort] = args;
  const ws = new WebSocket(`wss://127.0.0.1:${relayPort}/agent`, wsOptions(ca));
  const mux = new Mux(ws, (id) => {
    const sock = net.connect({ port: Number(targetPort), host: '127.0.0.1', noDelay: true, allowHalfOpen: true });
    sock.pause();
    sock.once('connect', () => {
      mux.attach(id, sock);
      mux.send(frame(OPENED, id));
      sock.resume();
    });
    sock.once('error', () => mux.send(frame(CLOSE, id)));
  });
  ws.on('open', () => console.log('ready'));
} else if (role === 'service') {
  const [ca, relayPort] = args;
  const ws = new WebSocket(`wss://127.0.0.1:${relayPort}/service`, wsOptions(ca));
  const mux = new Mux(ws, () => {});
  let next = 0;
  ws.on('open', () => {
    const server = net.createServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
      const id = next++;
      const st = mux.attach(id, sock);
      st.onOpened = () => sock.resume();
      mux.send(frame(OPEN, id));
    });
    server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
  });
} else {
  console.error('usage: minimal-mux-tunnel.mjs relay|agent|service ...');
  process.exit(2);
}
