'use strict';
// The single executable's main script (scripts/build-binary.mjs). The program is in the executable
// three times, once per role, as assets: this compiles only the one the command runs, so that
// `devstreams connect` (once per ssh) and the agent neither compile nor hold the hub's code.
const { getAsset } = require('node:sea');
const { compileFunction } = require('node:vm');

const command = process.argv[2];
const role = command === 'hub' || command === 'agent' ? command : 'service';
const file = `devstreams-${role}.cjs`;
compileFunction(getAsset(file, 'utf8'), ['exports', 'require', 'module', '__filename', '__dirname'], { filename: file })(
  module.exports,
  require,
  module,
  __filename,
  __dirname,
);
