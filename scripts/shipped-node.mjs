// The official Node.js binary that the single executables are built on (NODE_VERSION in
// binary-config.mjs), fetched once from the npm registry (`npm pack node-linux-ARCH@V`) and cached
// in node_modules/.cache/devstreams-node. build-binary.mjs makes the executables from it; the
// benchmarks run under it, so they measure the runtime that ships and not the host's Node.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_VERSION, TARGETS } from './binary-config.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CACHE = join(ROOT, 'node_modules/.cache/devstreams-node');

/** CACHE/node-vV-linux-ARCH/node, fetched when absent. Throws with npm's output when it fails. */
export function shippedNode(arch = process.arch) {
  if (!TARGETS[arch]) throw new Error(`no pinned Node.js for ${arch} (known: ${Object.keys(TARGETS).join(', ')})`);
  const dir = join(CACHE, `node-v${NODE_VERSION}-linux-${arch}`);
  const node = join(dir, 'node');
  if (existsSync(node) && existsSync(join(dir, 'LICENSE'))) return node;
  const spec = `${TARGETS[arch].npmPackage}@${NODE_VERSION}`;
  console.log(`fetching ${spec} from the npm registry`);
  const tmp = join(CACHE, `fetch-${arch}-${process.pid}`);
  mkdirSync(tmp, { recursive: true });
  try {
    const [packed] = JSON.parse(run('npm', ['pack', spec, '--json', '--pack-destination', tmp], tmp));
    run('tar', ['-xzf', join(tmp, packed.filename), '-C', tmp, 'package/bin/node', 'package/LICENSE'], tmp);
    mkdirSync(dir, { recursive: true });
    // Node's licence (and its bundled libraries'), shipped next to the executable in the .deb.
    renameSync(join(tmp, 'package/LICENSE'), join(dir, 'LICENSE'));
    renameSync(join(tmp, 'package/bin/node'), node);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return node;
}

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}
