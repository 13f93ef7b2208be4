'use strict';
// The single executable's main script (scripts/build-binary.mjs). The program is in the executable
// three times, once per role, as assets: this compiles only the one the command runs, so that
// `devstreams connect` (once per ssh) and the agent neither compile nor hold the hub's code.
//
// The service side's commands start once per use (`devstreams connect` once per ssh session), so
// their program is compiled from V8's code cache, made at build time by running this script on the
// same Node (scripts/sea-code-cache.mjs): the bytecode of the functions a command runs at start,
// not compiled again. V8 checks the cache against the source, its own version and its flags, and
// compiles as usual where it does not match, or where the build made none (the executables for
// another architecture than the build host's). The agent and the hub start once per boot.
const { getAsset } = require('node:sea');
const vm = require('node:vm');

const command = process.argv[2];
const role = command === 'hub' || command === 'agent' ? command : 'service';
const file = `devstreams-${role}.cjs`;
const params = ['exports', 'require', 'module', '__filename', '__dirname'];
const program = role === 'service' ? compileCached(getAsset(file, 'utf8')) : vm.compileFunction(getAsset(file, 'utf8'), params, { filename: file });
program(module.exports, require, module, __filename, __dirname);

/** The program as a function of the CommonJS parameters, compiled as a script so that a code cache can be made of it after a run. */
function compileCached(source) {
  let cachedData;
  try {
    cachedData = new Uint8Array(getAsset(`${file}.${process.arch}.cache`));
  } catch {
    // no cache for this architecture
  }
  const wrapped = `(function (${params.join(', ')}) {\n${source}\n})`;
  return new vm.Script(wrapped, { filename: file, lineOffset: -1, ...(cachedData ? { cachedData } : {}) }).runInThisContext();
}
