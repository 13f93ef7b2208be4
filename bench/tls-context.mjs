// What a TLS connection to the hub costs the agent's CPU, with a context built per connection (a
// `ca` option: Node parses the 119 system roots and the CA again each time) against one context
// built once and shared (agent/hub-tls.ts). A local TLS server in a child process; 40 connections
// per series, three rounds, alternating.
//   node bench/tls-context.mjs
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { fork, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';

if (process.argv[2] === 'server') {
  const [dir] = process.argv.slice(3);
  const srv = tls.createServer({ cert: readFileSync(join(dir, 'c.pem')), key: readFileSync(join(dir, 'k.pem')) }, (s) => {
    s.on('error', () => {});
    s.end();
  });
  srv.listen(0, '127.0.0.1', () => process.send(srv.address().port));
} else {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-bench-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'),
    '-out', join(dir, 'c.pem'), '-subj', '/CN=localhost', '-days', '1'], { stdio: 'ignore' });
  const server = fork(new URL(import.meta.url).pathname, ['server', dir]);
  try {
    const [port] = await once(server, 'message');
    const ca = readFileSync(join(dir, 'c.pem'), 'utf8');
    const shared = tls.createSecureContext({ ca: [...tls.rootCertificates, ca], minVersion: 'TLSv1.2' });
    const one = async (opts) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts });
      await once(s, 'secureConnect');
      s.destroy();
    };
    const series = [['a context per connection (`ca` option)', { ca: [...tls.rootCertificates, ca] }], ['one shared context', { secureContext: shared }]];
    for (const round of [1, 2, 3]) {
      for (const [name, opts] of series) {
        await one(opts); // warm-up
        const c0 = process.cpuUsage();
        const n = 40;
        for (let i = 0; i < n; i++) await one(opts);
        const c = process.cpuUsage(c0);
        console.log(`round ${round}, ${name}: client CPU per connection ${((c.user + c.system) / 1000 / n).toFixed(2)} ms`);
      }
    }
  } finally {
    server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}
