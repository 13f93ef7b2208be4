'use strict';
// Runs scripts/sea-main.cjs outside an executable, its assets read from a folder, and when the
// process exits (scripts/sea-code-cache.mjs): `make` writes V8's code cache of the program it
// compiled as a script to OUT; `check` writes to OUT whether V8 took the cache it was given
// (`accepted`, `rejected`, or `none` when there was none).
//   node scripts/sea-code-cache-run.cjs make|check SEA_MAIN ASSET_DIR OUT COMMAND [ARG...]
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

const [mode, main, assets, out] = process.argv.splice(2, 4); // process.argv[2] is now COMMAND, as in the executable
let script = null;
let given = false;
const recordingVm = {
  ...vm,
  Script: class extends vm.Script {
    constructor(source, options) {
      super(source, options);
      if (script) return; // the program's own scripts, if it makes any
      script = this;
      given = options?.cachedData !== undefined;
    }
  },
};
const sea = {
  getAsset(name, encoding) {
    const bytes = fs.readFileSync(path.join(assets, name)); // a missing cache throws, as in the executable
    return encoding ? bytes.toString(encoding) : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  },
};
// V8 checks a cache against its flags as they were when the cache was made; the service side sets
// some at start (protocol/gc-tuning.ts), after its program is compiled. So while the cache is made,
// the program's flag changes are left out: the cache carries the flags a starting executable has.
const v8 = require('node:v8');
const startFlags = mode === 'make' ? { ...v8, setFlagsFromString() {} } : v8;
const seaRequire = (id) => (id === 'node:sea' ? sea : id === 'node:vm' ? recordingVm : id === 'node:v8' || id === 'v8' ? startFlags : require(id));
process.on('exit', () => {
  if (!script) throw new Error(`${main} compiled no script`);
  if (mode === 'make') fs.writeFileSync(out, script.createCachedData());
  else fs.writeFileSync(out, !given ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted');
});
vm.compileFunction(fs.readFileSync(main, 'utf8'), ['exports', 'require', 'module', '__filename', '__dirname'], { filename: main })(
  module.exports,
  seaRequire,
  module,
  __filename,
  __dirname,
);
