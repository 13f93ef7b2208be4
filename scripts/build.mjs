// Bundles the TypeScript sources into dist/devstreams.mjs (dependencies stay in node_modules, but
// for Zod), and the SDK into dist/service.mjs with its types in dist/types/ (scripts/build-sdk.mjs).
// The single-executable build (issue 5) bundles dependencies too; this is the development build.
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildNative } from './native.mjs';
import { buildSdk } from './build-sdk.mjs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
// Chunk names carry a content hash: without this, every build would leave the last one's behind.
rmSync(new URL('../dist/chunks', import.meta.url), { recursive: true, force: true });
// Every npm package stays in node_modules but Zod: bundled, only the parts of Zod Mini that the
// schemas use are kept (protocol/zod.ts), where node_modules' zod/mini loads all of Zod's core
// and its locales (3.2 MB of heap) into every process.
const external = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies }).filter((name) => name !== 'zod');
/** The options the CLI and the SDK (scripts/build-sdk.mjs) are built with. */
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external,
  sourcemap: 'linked',
  define: { __DEVSTREAMS_VERSION__: JSON.stringify(pkg.version) },
  logLevel: 'warning',
};
await build({
  entryPoints: ['bin/devstreams.ts'],
  // Code splitting keeps the hub's and agent's dependencies (aedes, mqtt) out of the service
  // commands' start-up: `devstreams connect` is on the path of every ssh ProxyCommand.
  outdir: 'dist',
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  outExtension: { '.js': '.mjs' },
  splitting: true,
  ...common,
  banner: { js: '#!/usr/bin/env node' },
});

// The SDK for programs (`devstreams/service`, package.json `exports`): dist/service.mjs and dist/types/.
await buildSdk(common);

// The native helper for this host, next to the program (dist/native/, scripts/native.mjs). Without a
// C compiler the build goes on: the agent and `forward` then run without it (protocol/malloc-trim.ts).
if (process.platform === 'linux') {
  try {
    buildNative(process.arch, fileURLToPath(new URL('../dist/native', import.meta.url)));
  } catch (err) {
    console.warn(`build: native helper not built: ${err.message.split('\n')[0]}`);
  }
}
