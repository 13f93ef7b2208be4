// Bundles the TypeScript sources into dist/devstreams.mjs (dependencies stay in node_modules).
// The single-executable build (issue 5) bundles dependencies too; this is the development build.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
await build({
  entryPoints: ['bin/devstreams.ts'],
  outfile: 'dist/devstreams.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  banner: { js: '#!/usr/bin/env node' },
  define: { __DEVSTREAMS_VERSION__: JSON.stringify(pkg.version) },
  logLevel: 'warning',
});
