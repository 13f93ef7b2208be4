// The benchmark's target service (its own process): each connection's first byte picks a mode.
//   'E'           echo every byte back; end when the client ends.
//   'U' + u64 N   read N bytes (or until EOF), then answer one byte 'K' and end (upload throughput).
//   'D' + u64 N   send N bytes, then end (download throughput).
// Prints `listening PORT` once it listens on 127.0.0.1 (port 0 = any).
import net from 'node:net';

const CHUNK = Buffer.alloc(256 * 1024, 0x5a);

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
  sock.setNoDelay(true);
  sock.on('error', () => undefined);
  let head = Buffer.alloc(0);
  const onData = (d) => {
    head = head.length ? Buffer.concat([head, d]) : d;
    const mode = String.fromCharCode(head[0]);
    if (mode === 'E') {
      sock.off('data', onData);
      if (head.length > 1) sock.write(head.subarray(1));
      sock.pipe(sock);
      return;
    }
    if (head.length < 9) return;
    sock.off('data', onData);
    const n = Number(head.readBigUInt64BE(1));
    if (mode === 'U') {
      let left = n - (head.length - 9);
      let answered = false;
      const done = () => {
        if (!answered) sock.end('K');
        answered = true;
      };
      if (left <= 0) return done();
      sock.on('data', (c) => {
        left -= c.length;
        if (left <= 0) done();
      });
      sock.on('end', done); // the client stopped early (a time-bounded run)
    } else if (mode === 'D') {
      sock.resume();
      let left = n;
      const pump = () => {
        while (left > 0) {
          const c = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
          left -= c.length;
          if (!sock.write(c)) return void sock.once('drain', pump);
        }
        sock.end();
      };
      pump();
    } else sock.destroy();
  };
  sock.on('data', onData);
});
server.maxConnections = 100_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
