// Simulated devices for `npm run bench:fleet`: devices FROM..TO-1 of the fleet, each a real MQTT
// client with the devstreams protocol: authenticates (username = client id = device id, the key as
// password), keeps a retained-offline last will, subscribes to its request topic, publishes its
// status, and answers stream requests (200 OK on replyTo, then dials the relay and echoes bytes).
// Usage: node sim.mjs URL CA_FILE SEED FROM TO   Prints "ready N MS" once all are connected.
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { WebSocket } from 'ws';

const [url, caFile, seed, fromS, toS] = process.argv.slice(2);
const from = Number(fromS);
const to = Number(toS);
const ca = readFileSync(caFile);
export const deviceId = (i) => `sim-${String(i).padStart(5, '0')}`;
const keyOf = (id) => createHmac('sha256', seed).update(id).digest('base64url');
const INFLIGHT = 100;
const clients = [];

function startDevice(i) {
  const id = deviceId(i);
  const root = `devstreams/v1/devices/${id}`;
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, {
      clientId: id, username: id, password: keyOf(id), ca, protocolVersion: 4, keepalive: 120,
      reconnectPeriod: 0, connectTimeout: 60_000, clean: true,
      will: { topic: `${root}/status`, payload: JSON.stringify({ v: 1, online: false }), qos: 1, retain: true },
    });
    clients.push(c);
    c.once('error', reject);
    c.once('connect', async () => {
      try {
        await c.subscribeAsync(`${root}/streams/request`, { qos: 1 });
        await c.publishAsync(`${root}/status`, JSON.stringify({ v: 1, online: true, agentVersion: 'sim', openStreams: 0, at: Date.now() }), { qos: 1, retain: true });
        resolve();
      } catch (err) {
        reject(err);
      }
    });
    c.on('message', (_t, payload) => {
      let req;
      try { req = JSON.parse(payload.toString()); } catch { return; }
      c.publish(req.replyTo, JSON.stringify({ v: 1, streamId: req.streamId, status: 200, code: 'OK', reason: '' }), { qos: 1 });
      const ws = new WebSocket(req.relayUrl, 'devstreams.v1', { headers: { Authorization: `Bearer ${req.token}` }, ca, perMessageDeflate: false });
      ws.on('message', (d) => ws.send(d));
      ws.on('error', () => {});
    });
  });
}

const t0 = performance.now();
let next = from;
async function worker() {
  while (next < to) {
    const i = next++;
    await startDevice(i);
  }
}
try {
  await Promise.all(Array.from({ length: INFLIGHT }, worker));
  console.log(`ready ${to - from} ${Math.round(performance.now() - t0)}`);
} catch (err) {
  console.log(`failed ${err.message}`);
  process.exit(1);
}
process.on('SIGTERM', () => {
  for (const c of clients) c.end(true);
  process.exit(0);
});
