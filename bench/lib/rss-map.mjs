// Which code and data of the Node binary a process holds in its RSS, by symbol: the pages of the
// binary's mappings that are resident (/proc/PID/pagemap), each named by the symbol it falls in
// (`nm` on the binary, or for the single executable, whose Node is stripped, on the official Node it
// was built from: the same addresses). Symbols are grouped by namespace or prefix (V8's compilers,
// OpenSSL, ICU...). Pages past the end of every symbol are named for the symbol before them; two
// such regions matter in Node 24.22.3 (docs/OPERATIONS.md "Agent footprint"): the one after `vtable
// for node::crypto::DeriveBitsJob<node::crypto::ScryptTraits>` holds Node's own JavaScript sources,
// the one after `ossl_der_oid_id_alg_CMS3DESwrap` its startup snapshot with their code cache. Pages at
// or past the executable's note segment (the SEA blob: the programs) are counted as 'SEA blob'.
// Needs binutils' nm and readelf.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { NODE_VERSION } from '../../scripts/binary-config.mjs';
import { CACHE } from '../../scripts/shipped-node.mjs';

const PAGE = 4096;
const MiB = 2 ** 20;
const NAMESPACES = /^(?:\(anonymous namespace\)::)?(v8::internal::(?:\(anonymous namespace\)::)?[A-Za-z_]\w*|node::[A-Za-z_]\w*|[A-Za-z_]\w*)::/;
const C_PREFIXES = [
  [/^(SSL_|ssl|tls1?_|dtls)/, 'OpenSSL ssl'],
  [/^(ossl_|EVP_|OPENSSL|CRYPTO|X509|BN_|ASN1|EC_|RSA_|PEM_|BIO_|ERR_|OBJ_|ecp_|aesni|sha\d|x25519)/, 'OpenSSL crypto'],
  [/^uv_/, 'libuv'],
  [/^llhttp/, 'llhttp'],
  [/^(ares|ares_)/, 'c-ares'],
  [/^(deflate|inflate|zlib|crc32|adler)/, 'zlib'],
  [/^(u_|ucnv|ures|udata|ucol|ubrk|uloc|icudt)/, 'ICU'],
  [/^(v8_Default_embedded_blob_code|Builtins_)/, 'V8 embedded builtins (code)'],
  [/^v8_Default_embedded_blob_data/, 'V8 embedded builtins (data)'],
];

/** `{ total, groups: [[name, MiB]], symbols: [[name, KiB]] }` for process `pid`, largest first. */
export function rssMap(pid, { top = 20 } = {}) {
  const exe = realpathSync(`/proc/${pid}/exe`);
  const { addrs, names, ends } = symbols(exe);
  const { loads, blobStart } = segments(exe);
  const groups = new Map();
  const bySymbol = new Map();
  const add = (m, k, n) => m.set(k, (m.get(k) ?? 0) + n);
  const pagemap = openSync(`/proc/${pid}/pagemap`, 'r');
  const entry = Buffer.alloc(8);
  let total = 0;
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const f = line.split(/\s+/);
      if (f.length < 6 || f[5] !== exe) continue;
      const [lo, hi] = f[0].split('-').map((h) => parseInt(h, 16));
      // The binary's address of the mapping's first page: V8 maps its builtins' code a second time
      // elsewhere (near its code range), so an address is read from the file offset, not the mapping.
      const offset = parseInt(f[2], 16);
      const seg = loads.find((l) => offset >= l.offset && offset < l.offset + l.size);
      const base = seg ? seg.vaddr + (offset - seg.offset) : lo;
      for (let va = lo; va < hi; va += PAGE) {
        readSync(pagemap, entry, 0, 8, (va / PAGE) * 8);
        if ((entry.readBigUInt64LE() >> 63n) === 0n) continue;
        total += PAGE;
        const at = base + (va - lo);
        if (blobStart !== null && at >= blobStart) {
          add(groups, 'SEA blob', PAGE);
          continue;
        }
        const i = lastAtOrBelow(addrs, at);
        // Past a symbol's end (and a page's rounding): data no symbol names, such as Node's sources.
        const name = i < 0 ? '(before any symbol: ELF headers, dynamic symbol table)' : at >= ends[i] + PAGE ? `(no symbol) after ${names[i]}` : names[i];
        add(bySymbol, name, PAGE);
        add(groups, groupOf(name), PAGE);
      }
    }
  } finally {
    closeSync(pagemap);
  }
  const sorted = (m, unit) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => [k.slice(0, 100), Math.round((v / unit) * 100) / 100]);
  return { binary: exe, totalMiB: Math.round((total / MiB) * 100) / 100, groups: sorted(groups, MiB), symbols: sorted(bySymbol, 1024) };
}

/** Sorted symbol addresses and names: the binary's own, or the official Node's it was stripped from. */
function symbols(exe) {
  let out = nm(exe);
  if (out.length === 0) {
    const official = join(CACHE, `node-v${NODE_VERSION}-linux-${process.arch}`, 'node');
    if (!existsSync(official)) throw new Error(`${exe} has no symbols and ${official} is missing (npm run bench fetches it)`);
    out = nm(official);
  }
  const addrs = [];
  const names = [];
  const ends = [];
  for (const line of out) {
    const m = /^([0-9a-f]+) (?:([0-9a-f]+) )?[tTrRdDbBvVwW] (.*)$/.exec(line);
    // Thread-local symbols' values are offsets, not addresses.
    if (!m || parseInt(m[1], 16) < 0x10000) continue;
    addrs.push(parseInt(m[1], 16));
    ends.push(m[2] ? parseInt(m[1], 16) + parseInt(m[2], 16) : Infinity);
    names.push(m[3]);
  }
  return { addrs, names, ends };
}

function nm(file) {
  try {
    return execFileSync('nm', ['-n', '-S', '-C', '--defined-only', file], { maxBuffer: 512 * MiB, stdio: ['ignore', 'pipe', 'ignore'] }).toString().split('\n').filter(Boolean);
  } catch {
    return []; // "no symbols"
  }
}

/**
 * The binary's LOAD segments (file offset, address, size) and the address of its first NOTE segment
 * past its code (postject's SEA blob), or null when it has none.
 */
function segments(exe) {
  const out = execFileSync('readelf', ['-lW', exe]).toString();
  const hex = (h) => parseInt(h, 16);
  const loads = [...out.matchAll(/^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+(\S+(?: E)?)/gm)].map((m) => ({
    offset: hex(m[1]),
    vaddr: hex(m[2]),
    size: hex(m[3]),
    exec: m[4].includes('E'),
  }));
  const code = loads.find((l) => l.exec);
  const notes = [...out.matchAll(/^\s*NOTE\s+0x[0-9a-f]+\s+0x([0-9a-f]+)/gm)].map((m) => hex(m[1]));
  const past = notes.filter((a) => code && a > code.vaddr + code.size);
  return { loads, blobStart: past.length ? Math.min(...past) : null };
}

function lastAtOrBelow(sorted, x) {
  let lo = 0;
  let hi = sorted.length - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] <= x) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best;
}

function groupOf(name) {
  if (name.startsWith('(no symbol)') || name.startsWith('(before')) return name.slice(0, 80);
  for (const [re, group] of C_PREFIXES) if (re.test(name)) return group;
  const ns = NAMESPACES.exec(name);
  if (ns) return ns[1].replace('(anonymous namespace)::', '');
  return `(no namespace) ${name.slice(0, 48)}`;
}
