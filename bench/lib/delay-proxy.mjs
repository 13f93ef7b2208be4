// A TCP proxy that delays every chunk by a fixed time in each direction: a far-away hub on
// loopback (`bench/wan.mjs`). This machine has no netem, so a proxy stands in for the link.
//   node bench/lib/delay-proxy.mjs LISTEN_PORT UPSTREAM_PORT ONE_WAY_MS  -> "listening PORT"
// It delays data, not the TCP handshake (the kernel accepts at once), so a dial's connect costs no
// round trip here where it costs one on a real link: the figures it gives are, if anything, kind
// to whatever opens connections late.
import net from 'node:net';

const [listenPort, upstreamPort, oneWayMs] = process.argv.slice(2).map(Number);

/** `from`'s bytes written to `to` `oneWayMs` later, in order, with backpressure on the writer. */
function delayed(from, to) {
  let queued = 0;
  from.on('data', (chunk) => {
    queued += chunk.length;
    if (queued > 4 << 20) from.pause();
    setTimeout(() => {
      queued -= chunk.length;
      if (!to.destroyed) to.write(chunk);
      if (queued <= 4 << 20 && from.isPaused()) from.resume();
    }, oneWayMs);
  });
  // A half-close crosses the link like the bytes before it; a reset tears the other side down.
  from.on('end', () => setTimeout(() => to.end(), oneWayMs));
  from.on('error', () => setTimeout(() => to.destroy(), oneWayMs));
}

// allowHalfOpen: each socket ends its own side when the other direction's delayed end arrives, and
// closes once both directions have ended.
const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
  const upstream = net.connect({ port: upstreamPort, host: '127.0.0.1', noDelay: true, allowHalfOpen: true });
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
  delayed(client, upstream);
  delayed(upstream, client);
});
process.on('SIGTERM', () => process.exit(0));
server.listen(listenPort, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
