// The least a Node process can do to relay TCP: accept, dial the next hop, `pipe` both ways. No
// TLS, no framing. Used by bench/relay-floor.mjs. Prints `listening PORT`.
//   node bench/lib/node-relay.mjs UPSTREAM_PORT
import net from 'node:net';

const upstream = Number(process.argv[2]);
const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
  const next = net.connect({ port: upstream, host: '127.0.0.1', noDelay: true, allowHalfOpen: true });
  for (const s of [client, next]) s.on('error', () => (client.destroy(), next.destroy()));
  client.pipe(next);
  next.pipe(client);
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
