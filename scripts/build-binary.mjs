// npm run build:binary [-- ARCH...]: single executables dist/bin/devstreams-linux-{arm64,x64}
// with Node's single-executable-application support (issue 5):
//   1. bundle bin/devstreams.ts and every npm dependency into one CommonJS file per role (hub,
//      agent, service: each without the others' code), the blob's assets, behind a small main
//      script that compiles the one a command needs (scripts/sea-main.cjs); no native addons but
//      our own helper, an asset per architecture (scripts/native.mjs);
//   2. fetch the pinned official Node binaries from the npm registry (`npm pack node-linux-ARCH@V`,
//      cached in node_modules/.cache/devstreams-node) and strip them;
//   3. make the SEA blob with the same Node version running on this host;
//   4. inject the blob into each stripped base with postject, and report the sizes.
// Stripping comes before injection: stripping an injected binary can break the blob.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_VERSION, TARGETS, binaryName } from './binary-config.mjs';
import { CACHE, shippedNode } from './shipped-node.mjs';
import { buildNative, nativeName } from './native.mjs';
import { makeCodeCache } from './sea-code-cache.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORK = join(ROOT, 'dist/sea');
const OUT = join(ROOT, 'dist/bin');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
// Optional native helpers of `ws`: absent from the executable, so ws uses its JavaScript code.
const OPTIONAL_NATIVE = ['bufferutil', 'utf-8-validate'];
/** How each program in the executable is bundled: CommonJS for Node, held in memory as written. */
const PROGRAM_OPTIONS = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: `node${NODE_VERSION.split('.')[0]}`,
  // Whitespace and comments out: a role's program is held in memory as one string for the life of
  // the process, and the dependencies' comments carry non-ASCII characters (e.g. "RFC 4291 §2.7"),
  // which turn the whole 3.8 MB source into a two-byte string (7.5 MB). ASCII and no comments:
  // 2.8 MB, one byte per character. Names are kept (no identifier minification).
  minifyWhitespace: true,
  // Only syntax: names are kept.
  minifySyntax: true,
  charset: 'ascii',
  logLevel: 'warning',
};

/**
 * Modules the executable never runs, replaced by a few lines each: their importers require them
 * when they load, so leaving them out would fail. Each entry is the replacement's source, or
 * `{ importers, roles, source }` to replace the module only where those importers (a path pattern)
 * ask for it, for a module name that other importers use in full (a Node built-in, a relative
 * path), and only in those roles' programs.
 * - mqtt.js's `./socks` (with the socks package, ip-address, smart-buffer, and the built-ins `dns`
 *   and `assert`): only for an MQTT connection through a SOCKS proxy (mqtt.js's `socksProxy`
 *   option), which devstreams never sets (the agent's `proxy` is an HTTP CONNECT proxy,
 *   agent/proxy.ts). Used anyway, it fails with an error that says so.
 * - `worker-timers` (with its broker, worker factory and Babel runtime): keep-alive timers in a Web
 *   Worker, which mqtt.js picks only in a browser; in Node it uses setInterval, as this does.
 *   These two were 135 KB of the agent's program (and of the hub's), compiled and run at every start.
 * - `thread-stream`: pino's transports, which run in a worker thread; devstreams logs to stdout
 *   and never starts one. Used anyway, it fails with an error that says so.
 * - `worker_threads` for pino (`isMainThread`: devstreams runs pino on its main thread only),
 *   `assert` for sonic-boom and https-proxy-agent (one `assert(condition)` call each, with the same
 *   behaviour), and in the agent's and the service side's programs `zlib` for ws (permessage-deflate,
 *   which every WebSocket they dial turns off, protocol/ws-duplex.ts streamDialOptions; the hub's
 *   MQTT client may use it with an external broker): for the service side, loading zlib was 5 ms of
 *   each `devstreams connect`'s start;
 *   with the above, the only reasons a fresh agent loaded these built-ins (and the built-ins they
 *   load), which it carried for nothing (docs/OPERATIONS.md "Agent footprint").
 * - `lru-cache` for mqtt.js's topic-alias-send: MQTT 5 topic aliases, made only when an MQTT 5
 *   broker's CONNACK offers them (devstreams speaks MQTT 3.1.1). Loading it read the global
 *   `performance`, which loads all of perf_hooks. Used anyway, it fails with an error that says so.
 * - `readable-stream` for mqtt.js, mqtt-packet and bl, in the agent's program: a copy of Node's own
 *   streams (Node 18's), kept for browsers; Node's `stream` is the same API. 136 KB of the agent's
 *   program with its dependencies, and a second stream implementation compiled at every start.
 * - mqtt.js's `is-browser`: its checks read the global `navigator`, whose first read loads Node's
 *   internal/navigator; the executable runs on Node alone, so the answers are written in.
 * - `debug` (for mqtt.js, mqtt-packet and https-proxy-agent): always off in the executable
 *   (scripts/sea-shims/debug.cjs), since mqtt-packet's trace prints the MQTT password (the device
 *   token or key) and `DEBUG=*` on a device would put it in the journal; and its colours load
 *   Node's `tty`. These two: 0.2-0.5 MB of a fresh agent's RSS (docs/OPERATIONS.md "Agent footprint").
 * - `yaml` in the agent's program: the agent parses YAML only to read its config, at start and on
 *   SIGHUP. Its parser is an asset of its own (bundleYaml), compiled for each read and then left to
 *   the garbage collector (scripts/sea-shims/yaml-on-demand.cjs): 161 KB of the agent's program,
 *   0.1-0.4 MB of its idle RSS.
 */
const NOT_A_BROWSER = `exports.__esModule = true; exports.default = false; exports.isWebWorker = false; exports.isReactNativeBrowser = false;`;
const REPLACED = {
  './socks': {
    importers: /node_modules\/mqtt\/build\/lib\/connect\/(tcp|tls)\.js$/,
    source: `exports.__esModule = true; exports.default = function () { throw new Error('SOCKS proxies are not supported by this build of devstreams'); };`,
  },
  'worker-timers': `exports.setInterval = (f, ms) => setInterval(f, ms); exports.clearInterval = (t) => clearInterval(t); exports.setTimeout = (f, ms) => setTimeout(f, ms); exports.clearTimeout = (t) => clearTimeout(t);`,
  'thread-stream': `module.exports = class ThreadStream { constructor() { throw new Error('pino transports are not supported by this build of devstreams'); } };`,
  worker_threads: { importers: /node_modules\/pino\/lib\/tools\.js$/, source: `exports.isMainThread = true;` },
  assert: {
    importers: /node_modules\/(sonic-boom|https-proxy-agent)\//,
    source: `function ok(value, message) { if (value) return; const e = new Error(message ?? 'The expression evaluated to a falsy value'); e.code = 'ERR_ASSERTION'; throw e; } ok.ok = ok; module.exports = ok;`,
  },
  'lru-cache': {
    importers: /node_modules\/mqtt\/build\/lib\/topic-alias-send\.js$/,
    source: `exports.LRUCache = class LRUCache { constructor() { throw new Error('MQTT 5 topic aliases are not supported by this build of devstreams'); } };`,
  },
  'readable-stream': {
    importers: /node_modules\/(mqtt|mqtt-packet|bl)\//,
    roles: ['agent'],
    source: `module.exports = require('node:stream');`,
  },
  './is-browser': {
    importers: /node_modules\/mqtt\/build\/lib\/[^/]+\.js$/,
    source: NOT_A_BROWSER,
  },
  '../is-browser': {
    importers: /node_modules\/mqtt\/build\/lib\/connect\/[^/]+\.js$/,
    source: NOT_A_BROWSER,
  },
  debug: readFileSync(join(ROOT, 'scripts/sea-shims/debug.cjs'), 'utf8'),
  yaml: { roles: ['agent'], source: readFileSync(join(ROOT, 'scripts/sea-shims/yaml-on-demand.cjs'), 'utf8') },
  zlib: {
    importers: /node_modules\/ws\//,
    roles: ['agent', 'service'],
    source: `const off = () => { throw new Error('permessage-deflate is not supported by this build of devstreams'); }; exports.createDeflateRaw = off; exports.createInflateRaw = off; exports.Z_DEFAULT_WINDOWBITS = 15; exports.Z_SYNC_FLUSH = 2;`,
  },
};

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const arches = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(TARGETS);
for (const a of arches) if (!TARGETS[a]) fail(`unknown architecture ${JSON.stringify(a)} (known: ${Object.keys(TARGETS).join(', ')})`);
if (process.platform !== 'linux' || !TARGETS[process.arch]) fail(`the build runs on linux x64 or arm64, not ${process.platform} ${process.arch}`);

const started = Date.now();
mkdirSync(CACHE, { recursive: true });
mkdirSync(WORK, { recursive: true });
mkdirSync(OUT, { recursive: true });

const ROLES = ['service', 'agent', 'hub'];
const bundles = Object.fromEntries(await Promise.all(ROLES.map(async (role) => [`devstreams-${role}.cjs`, await bundleRole(role)])));
bundles['yaml.cjs'] = await bundleYaml();
const natives = Object.fromEntries(arches.map((arch) => [nativeName(arch), nativeHelper(arch)]));
const cache = codeCache();
const caches = { [basename(cache)]: cache }; // the asset name scripts/sea-main.cjs reads
const blob = makeBlob(join(ROOT, 'scripts/sea-main.cjs'), { ...bundles, ...natives, ...caches });
for (const arch of arches) {
  const out = join(OUT, binaryName(arch));
  const base = strippedNode(arch);
  const tmp = `${out}.${process.pid}.tmp`;
  copyFileSync(base, tmp);
  inject(tmp, blob);
  chmodSync(tmp, 0o755);
  renameSync(tmp, out);
  if (arch === process.arch) smokeTest(out);
  console.log(`${rel(out)}  ${mib(out)} (stripped node ${NODE_VERSION} ${mib(base)} + blob ${mib(blob)})`);
}
console.log(`built in ${((Date.now() - started) / 1000).toFixed(1)} s`);

/**
 * One role's program as one CommonJS file with every dependency inside (the main script compiles it
 * as CommonJS). `__DEVSTREAMS_ROLE__` folds bin/cli-main.ts's other roles away: the agent's file
 * has no hub (sql.js, aedes) and no service-side code.
 */
async function bundleRole(role) {
  const file = join(WORK, `devstreams-${role}.cjs`);
  const result = await build({
    ...PROGRAM_OPTIONS,
    entryPoints: [join(ROOT, 'bin/devstreams.ts')],
    outfile: file,
    define: { __DEVSTREAMS_VERSION__: JSON.stringify(pkg.version), __DEVSTREAMS_SEA__: 'true', __DEVSTREAMS_ROLE__: JSON.stringify(role) },
    // Folds the role conditions (PROGRAM_OPTIONS' minifySyntax).
    plugins: [absentModules(OPTIONAL_NATIVE), replacedModules(REPLACED, role)],
    metafile: true,
  });
  const native = Object.keys(result.metafile.inputs).filter((f) => f.endsWith('.node') || f.includes('node-gyp-build'));
  if (native.length) fail(`the bundle would need native addons: ${native.join(', ')}`);
  return file;
}

/** The YAML parser alone, for the agent's program to compile when it reads its config (REPLACED). */
async function bundleYaml() {
  const file = join(WORK, 'yaml.cjs');
  await build({ ...PROGRAM_OPTIONS, stdin: { contents: `module.exports = require('yaml');`, resolveDir: ROOT, loader: 'js' }, outfile: file });
  return file;
}

/** An esbuild filter that matches exactly these import paths. */
function exactly(names) {
  return new RegExp(`^(${names.map((n) => n.replace(/[-/]/g, '\\$&')).join('|')})$`);
}

/** Resolves the named packages to a module that throws MODULE_NOT_FOUND, as if not installed. */
function absentModules(names) {
  const filter = exactly(names);
  return {
    name: 'absent-modules',
    setup(b) {
      b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'absent' }));
      b.onLoad({ filter: /.*/, namespace: 'absent' }, (args) => ({
        loader: 'js',
        contents: `const e = new Error(${JSON.stringify(`Cannot find module '${args.path}'`)}); e.code = 'MODULE_NOT_FOUND'; throw e;`,
      }));
    },
  };
}

/** Resolves each named package to the given CommonJS source instead, where its importer and role match (see REPLACED). */
function replacedModules(all, role) {
  const replaced = Object.fromEntries(Object.entries(all).filter(([, r]) => typeof r === 'string' || !r.roles || r.roles.includes(role)));
  const filter = exactly(Object.keys(replaced));
  const entry = (name) => (typeof replaced[name] === 'string' ? { source: replaced[name] } : replaced[name]);
  return {
    name: 'replaced-modules',
    setup(b) {
      b.onResolve({ filter }, (args) => {
        const { importers } = entry(args.path);
        if (importers && !importers.test(args.importer.split('\\').join('/'))) return undefined;
        return { path: args.path, namespace: 'replaced' };
      });
      b.onLoad({ filter: /.*/, namespace: 'replaced' }, (args) => ({ loader: 'js', contents: entry(args.path).source }));
    },
  };
}

/** The SEA preparation blob, made by the pinned Node for this host (the blob is the same for every arch). */
function makeBlob(main, assets) {
  const blob = join(WORK, 'devstreams.blob');
  const config = join(WORK, 'sea-config.json');
  // No code cache of the main script (a few lines) and no snapshot; the service program's code
  // cache is an asset (codeCache, below), for the host's architecture.
  // DEP0169: MQTT.js's connect() calls url.parse() on the broker URL, which Node 24 warns about at
  // run time (one stderr line per agent start); silenced in the executable only, and only that code.
  const execArgv = ['--disable-warning=DEP0169'];
  writeFileSync(config, JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false, execArgv, assets }, null, 2));
  run(baseNode(process.arch), ['--experimental-sea-config', config], { quiet: true });
  return blob;
}

/** V8's code cache of the service program, made and checked on the pinned Node for this host (scripts/sea-code-cache.mjs). */
function codeCache() {
  try {
    return makeCodeCache(baseNode(process.arch), WORK);
  } catch (err) {
    fail(err.message);
  }
}

/** The native helper for `arch` (scripts/native.mjs); a missing compiler ends the build. */
function nativeHelper(arch) {
  try {
    return buildNative(arch, WORK);
  } catch (err) {
    fail(err.message);
  }
}

/** The pinned official binary (scripts/shipped-node.mjs); a failed fetch ends the build. */
function baseNode(arch) {
  try {
    return shippedNode(arch);
  } catch (err) {
    fail(err.message);
  }
}

/** CACHE/node-vV-linux-ARCH/node-stripped */
function strippedNode(arch) {
  const stripped = join(CACHE, `node-v${NODE_VERSION}-linux-${arch}`, 'node-stripped');
  if (existsSync(stripped)) return stripped;
  const node = baseNode(arch);
  const { strip, stripPackage } = TARGETS[arch];
  if (spawnSync(strip, ['--version']).error) fail(`${strip} not found (Debian: apt-get install ${stripPackage})`);
  run(strip, ['-o', `${stripped}.tmp`, node]);
  renameSync(`${stripped}.tmp`, stripped);
  return stripped;
}

function inject(file, blob) {
  const cli = join(ROOT, 'node_modules/postject/dist/cli.js');
  const out = run(process.execPath, [cli, file, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE, '--overwrite'], { quiet: true, stderrToo: true });
  // LIEF (inside postject) warns about the names of note sections on Node's official ELF builds;
  // harmless (the executables run). Anything else postject says is shown.
  const rest = out.split('\n').filter((l) => l.trim() && !/Can't find string offset for section name '\.note/.test(l) && !/injection/i.test(l));
  if (rest.length) console.log(rest.join('\n'));
}

function smokeTest(exe) {
  const r = spawnSync(exe, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  const want = `devstreams ${pkg.version} (node v${NODE_VERSION})\n`;
  if (r.status !== 0 || r.stdout !== want || r.stderr !== '') {
    fail(`${rel(exe)} --version: exit ${r.status}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}; want ${JSON.stringify(want)}`);
  }
}

function run(cmd, args, { cwd = ROOT, quiet = false, stderrToo = false } = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error || r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}${r.stdout}`);
  if (!quiet) process.stdout.write(r.stdout);
  return stderrToo ? `${r.stdout}\n${r.stderr}` : r.stdout;
}

function mib(file) {
  return `${(statSync(file).size / 1024 / 1024).toFixed(1)} MiB`;
}
function rel(file) {
  return file.startsWith(ROOT) ? file.slice(ROOT.length) : file;
}
function fail(message) {
  console.error(`build-binary: ${message}`);
  process.exit(1);
}
