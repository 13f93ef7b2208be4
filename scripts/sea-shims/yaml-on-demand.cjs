'use strict';
// `yaml` in the agent's program of the single executable: the agent parses YAML only to read its
// config, at start and on SIGHUP, and then holds no YAML object. The parser is compiled from its
// own asset (yaml.cjs, scripts/build-binary.mjs) for each parse and left to the garbage collector
// afterwards, with its source and bytecode, where bundled it would stay in the agent's memory for
// the life of the process (docs/OPERATIONS.md "Agent footprint"). It exports what the agent's code
// uses of `yaml`, `parseDocument` (protocol/config-loader.ts), and nothing else: an agent module that
// imports more from `yaml` must be added here.
const { getAsset } = require('node:sea');
const { compileFunction } = require('node:vm');

exports.parseDocument = (text, options) => {
  const module = { exports: {} };
  compileFunction(getAsset('yaml.cjs', 'utf8'), ['exports', 'require', 'module'], { filename: 'yaml.cjs' })(module.exports, require, module);
  return module.exports.parseDocument(text, options);
};
