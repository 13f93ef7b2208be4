import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * glibc's malloc_trim(0), through devstreams' one native helper (native/malloc-trim.c): it hands the
 * free pages inside glibc's heap back to the kernel, which glibc's free() never does for the space
 * below the heap's top. A stream's buffers come from that heap and die in their hundreds of
 * thousands between allocations that live on, so without it a process keeps its busiest moment's
 * heap resident for good. protocol/idle-memory.ts calls it once per idle period, after the garbage
 * collection that frees those buffers.
 *
 * Where the helper is:
 * - the single executable carries one per architecture as an asset (scripts/build-binary.mjs). A
 *   shared library has to be a file to be loaded, so it is written to a fresh private directory
 *   (mkdtemp, mode 0700) under the temporary directory ($TMPDIR; the systemd unit's PrivateTmp),
 *   loaded, and removed at once: nothing else can write to that directory in between;
 * - the development build has the host's in dist/native/, next to dist/devstreams.mjs.
 * Anywhere it cannot be loaded (not Linux, not glibc, a temporary directory mounted noexec, a build
 * made without a C compiler) the process runs as before without it; `reason` says why.
 */
export type MallocTrim = () => boolean;
export type MallocTrimLoad = { trim: MallocTrim; reason?: undefined } | { trim: null; reason: string };

declare const __DEVSTREAMS_SEA__: boolean | undefined;
const sea = typeof __DEVSTREAMS_SEA__ === 'boolean' && __DEVSTREAMS_SEA__;

/** The helper's file name for this machine, as scripts/native.mjs names it. */
export const MALLOC_TRIM_ADDON = `malloc-trim-linux-${process.arch}.node`;

let loaded: MallocTrimLoad | undefined;

/** Loads the helper once per process (on first use: nothing is read at start-up). */
export function loadMallocTrim(): MallocTrimLoad {
  loaded ??= process.platform === 'linux' ? (sea ? fromExecutable() : loadMallocTrimFrom(devBuildFile())) : { trim: null, reason: `no glibc on ${process.platform}` };
  return loaded;
}

/** Loads the helper from a file (the development build's, or a test's). */
export function loadMallocTrimFrom(file: string): MallocTrimLoad {
  try {
    const module = { exports: {} as { trim?: unknown } };
    process.dlopen(module, file);
    const trim = module.exports.trim;
    if (typeof trim !== 'function') return { trim: null, reason: `${file} has no trim function` };
    return { trim: trim as MallocTrim };
  } catch (err) {
    return { trim: null, reason: firstLine(err) };
  }
}

function devBuildFile(): string {
  let program = process.argv[1] ?? '';
  try {
    program = realpathSync(program);
  } catch {
    // not a file (node -e, a REPL): the path below will not exist either, and says so
  }
  return join(dirname(program), 'native', MALLOC_TRIM_ADDON);
}

function fromExecutable(): MallocTrimLoad {
  let bytes: ArrayBuffer;
  try {
    const { getAsset } = process.getBuiltinModule('node:sea') as typeof import('node:sea');
    bytes = getAsset(MALLOC_TRIM_ADDON);
  } catch (err) {
    return { trim: null, reason: `this executable has no ${MALLOC_TRIM_ADDON}: ${(err as Error).message}` };
  }
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-native-'));
    const file = join(dir, MALLOC_TRIM_ADDON);
    writeFileSync(file, new Uint8Array(bytes), { mode: 0o500, flag: 'wx' });
    return loadMallocTrimFrom(file);
  } catch (err) {
    return { trim: null, reason: firstLine(err) };
  } finally {
    // Loaded, the library stays mapped: the file and its directory can go.
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

function firstLine(err: unknown): string {
  return String((err as Error).message ?? err).split('\n', 1)[0] ?? '';
}
