// The floor of devstreams' shape in Node: the least code that makes the same connections, used as
// a baseline in `npm run bench` ("minimal wss"). Per stream: the service side dials the relay over
// wss://, the relay asks the agent (over one control WebSocket) to dial it too, the agent connects
// the target and dials the relay, the relay pairs the two and forwards messages. TLS (the same
// dev CA as devstreams), ws with bufferutil, 1 MiB backpressure: the same libraries and settings.
// What it leaves out is everything devstreams adds: authentication, tokens, the allowlist, MQTT,
// half-close, heartbeats, logs, limits, history. The gap between the two is what those cost.
//
//   node bench/lib/minimal-tunnel.mjs relay CERT KEY           -> "listening PORT"
//   node bench/lib/minimal-tunnel.mjs agent CA RELAY_PORT TARGET_PORT -> "ready"
//   node bench/lib/minimal-tunnel.mjs service CA RELAY_PORT    -> "listening PORT"
import https from 'node:https';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { WebSocket, WebSocketServer } from 'ws';
import { HIGH_WATER, forward, setUpProcess, wsOptions } from './minimal-common.mjs';

const [role, ...args] = process.argv.slice(2);
setUpProcess(role);

/** WebSocket <-> TCP socket, both ways, with backpressure; either end closing closes the other. */
function bridge(ws, sock) {
  ws.on('message', (d) => {
    if (!sock.write(d)) {
      ws.pause();
      sock.once('drain', () => ws.resume());
    }
  });
  sock.on('data', (d) => {
    ws.send(d, { binary: true }, () => {
      if (sock.isPaused() && ws.bufferedAmount < HIGH_WATER) sock.resume();
    });
    if (ws.bufferedAmount >= HIGH_WATER) sock.pause();
  });
  sock.on('end', () => ws.close());
  sock.on('error', () => ws.terminate());
  ws.on('close', () => sock.end());
  ws.on('error', () => sock.destroy());
}

if (role === 'relay') {
  const [cert, key] = args;
  const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) });
  const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: false });
  const waiting = new Map();
  let control;
  let next = 0;
  wss.on('connection', (ws, req) => {
    const [, kind, id] = req.url.split('/');
    if (kind === 'control') return void (control = ws);
    if (kind === 'service') {
      const sid = String(next++);
      ws.pause();
      waiting.set(sid, ws);
      control.send(sid);
      return;
    }
    const peer = waiting.get(id);
    waiting.delete(id);
    forward(peer, ws);
    forward(ws, peer);
    ws.on('close', () => peer.close());
    peer.on('close', () => ws.close());
    peer.resume();
  });
  server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
} else if (role === 'agent') {
  const [ca, relayPort, targetPort] = args;
  const opts = wsOptions(ca);
  const control = new WebSocket(`wss://127.0.0.1:${relayPort}/control`, opts);
  control.on('open', () => console.log('ready'));
  control.on('message', (id) => {
    const sock = net.connect({ port: Number(targetPort), host: '127.0.0.1', noDelay: true });
    sock.pause();
    const ws = new WebSocket(`wss://127.0.0.1:${relayPort}/agent/${id}`, opts);
    ws.on('open', () => {
      bridge(ws, sock);
      sock.resume();
    });
    ws.on('error', () => sock.destroy());
  });
} else if (role === 'service') {
  const [ca, relayPort] = args;
  const opts = wsOptions(ca);
  const server = net.createServer({ noDelay: true }, (sock) => {
    sock.pause();
    const ws = new WebSocket(`wss://127.0.0.1:${relayPort}/service`, opts);
    ws.on('open', () => {
      bridge(ws, sock);
      sock.resume();
    });
    ws.on('error', () => sock.destroy());
  });
  server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
} else {
  console.error('usage: minimal-tunnel.mjs relay|agent|service ...');
  process.exit(2);
}
