// The benchmarks measure devstreams on the runtime it ships with: the Node.js pinned for the single
// executables (scripts/binary-config.mjs, Node 24 with OpenSSL 3.5), not the host's Node (20 here,
// OpenSSL 3.0, whose TLS handshakes cost about a third more CPU). Importing this module re-runs the
// importing script under that Node, fetched from the npm registry once and cached, unless it
// already runs there or BENCH_HOST_NODE=1 asks for the host's Node. Every process the bench starts
// with process.execPath (devstreams, the minimal tunnel, the target, the load generator) then
// runs on it.
import { spawnSync } from 'node:child_process';
import { NODE_VERSION } from '../../scripts/binary-config.mjs';
import { shippedNode } from '../../scripts/shipped-node.mjs';

if (process.versions.node !== NODE_VERSION && process.env.BENCH_HOST_NODE !== '1') {
  const node = shippedNode();
  const r = spawnSync(node, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
