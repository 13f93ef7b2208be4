// npm run build:deb [-- [--out DIR] [--compression xz|gzip|none] [ARCH...]]:
// dist/deb/devstreams-agent_VERSION_{arm64,amd64}.deb from the single executables (issue 5).
// Needs `npm run build:binary` first and dpkg-deb (Debian's dpkg). Contents:
//   /usr/bin/devstreams                                   the executable (0755)
//   /lib/systemd/system/devstreams-agent.service          systemd/devstreams-agent.service as it is
//   /lib/systemd/system/devstreams-agent.service.d/unconfigured.conf
//                                                         no start while the config is the example
//   /etc/devstreams/agent.yaml                            commented example, conffile, 0600
//   /usr/share/doc/devstreams-agent/                      copyright, Node.js licence
// Maintainer scripts (packaging/deb/): postinst creates the system user `devstreams`, gives it the
// config and enables the unit; prerm stops it on removal; postrm cleans up on purge.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_VERSION, TARGETS, binaryName } from './binary-config.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PKG = 'devstreams-agent';
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

const { out, compression, arches } = parseArgs(process.argv.slice(2));
mkdirSync(out, { recursive: true });
for (const arch of arches) {
  const deb = buildDeb(arch);
  console.log(`${deb}  ${(statSync(deb).size / 1024 / 1024).toFixed(1)} MiB`);
}

function buildDeb(arch) {
  const { debArch } = TARGETS[arch];
  const exe = join(ROOT, 'dist/bin', binaryName(arch));
  if (!existsSync(exe)) fail(`${exe} is missing: run npm run build:binary first`);
  const stage = join(out, `.stage-${debArch}-${process.pid}`);
  rmSync(stage, { recursive: true, force: true });
  try {
    put(exe, stage, 'usr/bin/devstreams', 0o755);
    put(join(ROOT, 'systemd/devstreams-agent.service'), stage, 'lib/systemd/system/devstreams-agent.service', 0o644);
    put(join(ROOT, 'packaging/systemd/unconfigured.conf'), stage, 'lib/systemd/system/devstreams-agent.service.d/unconfigured.conf', 0o644);
    put(join(ROOT, 'packaging/agent.yaml'), stage, 'etc/devstreams/agent.yaml', 0o600);
    chmodSync(join(stage, 'etc/devstreams'), 0o755);
    write(stage, `usr/share/doc/${PKG}/copyright`, copyright(), 0o644);
    put(join(ROOT, `node_modules/.cache/devstreams-node/node-v${NODE_VERSION}-linux-${arch}/LICENSE`), stage, `usr/share/doc/${PKG}/LICENSE.node`, 0o644);

    const control = readFileSync(join(ROOT, 'packaging/deb/control'), 'utf8')
      .replaceAll('@VERSION@', debVersion(pkg.version))
      .replaceAll('@ARCH@', debArch)
      .replaceAll('@NODE_VERSION@', NODE_VERSION)
      .replaceAll('@INSTALLED_SIZE@', String(installedSizeKiB(stage)));
    write(stage, 'DEBIAN/control', control, 0o644);
    put(join(ROOT, 'packaging/deb/conffiles'), stage, 'DEBIAN/conffiles', 0o644);
    for (const s of ['postinst', 'prerm', 'postrm']) put(join(ROOT, 'packaging/deb', s), stage, `DEBIAN/${s}`, 0o755);

    const deb = join(out, `${PKG}_${debVersion(pkg.version)}_${debArch}.deb`);
    run('dpkg-deb', ['--root-owner-group', `-Z${compression}`, '--build', stage, deb]);
    return deb;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

function put(from, stage, path, mode) {
  if (!existsSync(from)) fail(`${from} is missing`);
  const to = join(stage, path);
  mkdirs(stage, dirname(path));
  copyFileSync(from, to);
  chmodSync(to, mode);
}
function write(stage, path, text, mode) {
  mkdirs(stage, dirname(path));
  writeFileSync(join(stage, path), text);
  chmodSync(join(stage, path), mode);
}
/** Folders 0755 whatever the umask (dpkg-deb takes modes from the staging tree). */
function mkdirs(stage, path) {
  let dir = stage;
  for (const part of ['', ...path.split('/')]) {
    dir = join(dir, part);
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
  }
}

function installedSizeKiB(stage) {
  let bytes = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'DEBIAN' && dir === stage) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else bytes += statSync(p).size;
    }
  };
  walk(stage);
  return Math.ceil(bytes / 1024);
}

/** npm pre-release `1.2.0-rc.1` sorts before `1.2.0`; Debian needs `1.2.0~rc.1` for that. */
function debVersion(v) {
  return v.replace('-', '~');
}

function copyright() {
  return `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: devstreams
Source: https://github.com/devstreams/devstreams

Files: *
Copyright: devstreams contributors
License: ${pkg.license}

Files: usr/bin/devstreams
Comment: a Node.js ${NODE_VERSION} single executable: Node.js and the libraries it bundles are under
 the licences in /usr/share/doc/${PKG}/LICENSE.node; the bundled npm packages (aedes, mqtt, ws,
 pino, yaml, zod and their dependencies) are under their own permissive licences.
`;
}

function parseArgs(argv) {
  let outDir = join(ROOT, 'dist/deb');
  let comp = 'xz';
  const list = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') outDir = resolve(argv[++i] ?? fail('--out needs a folder'));
    else if (argv[i] === '--compression') comp = argv[++i] ?? fail('--compression needs xz, gzip or none');
    else if (TARGETS[argv[i]]) list.push(argv[i]);
    else fail(`unknown argument ${JSON.stringify(argv[i])} (usage: build-deb.mjs [--out DIR] [--compression xz|gzip|none] [${Object.keys(TARGETS).join('|')}...])`);
  }
  if (!['xz', 'gzip', 'none'].includes(comp)) fail(`--compression must be xz, gzip or none, not ${JSON.stringify(comp)}`);
  return { out: outDir, compression: comp, arches: list.length ? list : Object.keys(TARGETS) };
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}${r.stdout}`);
}
function fail(message) {
  console.error(`build-deb: ${message}`);
  process.exit(1);
}
