import { holdOptimizingCompilers } from '../protocol/compiler-tiers.js';
import { enableCompileCache } from './compile-cache.js';
import { keepSecretsOutOfDebug } from './debug-secrets.js';

// The executable's entry. The service commands (`connect` runs once per ssh, as its ProxyCommand)
// first turn on V8's compile cache, so that the modules loaded next are not compiled again on
// every run; the daemons (`hub`, `agent`) start once and keep no cache. Then the command line.
// The single executable (scripts/build-binary.mjs defines this) loads no module files: nothing to cache.
declare const __DEVSTREAMS_SEA__: boolean | undefined;
const command = process.argv[2];
const sea = typeof __DEVSTREAMS_SEA__ === 'boolean' && __DEVSTREAMS_SEA__;
if (!sea && command !== 'hub' && command !== 'agent') enableCompileCache();
// The agent starts with V8's optimizing compilers held back: Maglev until its first stream, TurboFan
// for good (protocol/compiler-tiers.ts). Set before its program loads, which is when they would compile.
// Imported as its own module, not through protocol/index.js, which would load the rest first.
if (command === 'agent') holdOptimizingCompilers();
// Before mqtt.js and its debug load: no trace of theirs prints a secret (bin/debug-secrets.ts).
if (!sea) {
  const note = keepSecretsOutOfDebug();
  if (note) process.stderr.write(note);
}
void import('./cli-main.js');
