import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * glibc's malloc_trim(0), through devstreams' one native helper (native/malloc-trim.c), and its
 * thresholds for a busy relay (RELAY_HEAP_THRESHOLDS, below); the same helper sends systemd's
 * notifications (`notify`, protocol/sd-notify.ts), widens `devstreams connect`'s pipes
 * (`pipeSize`, service/stdio-pipes.ts) and names the process (`threadName`,
 * protocol/process-name.ts). malloc_trim hands the
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
/** glibc's mallopt M_TRIM_THRESHOLD and M_MMAP_THRESHOLD, in bytes. */
export interface HeapThresholds {
  trim: number;
  mmap: number;
}
/** Sets both thresholds: true when glibc took them. */
export type MallocThresholds = (trimBytes: number, mmapBytes: number) => boolean;
/** sd_notify(3): one datagram to NOTIFY_SOCKET (protocol/sd-notify.ts); 0 when sent, else an errno. */
export type SdNotifySend = (socketPath: string, message: string) => number;
/** fcntl F_SETPIPE_SZ: the capacity the kernel set for the pipe `fd` is an end of, or minus an errno. */
export type PipeSize = (fd: number, bytes: number) => number;
/** prctl PR_SET_NAME for the calling thread (1 to 15 bytes): 0, or an errno. */
export type ThreadName = (name: string) => number;
export type MallocTrimLoad =
  | { trim: MallocTrim; thresholds: MallocThresholds; notify: SdNotifySend; pipeSize: PipeSize; threadName: ThreadName; reason?: undefined }
  | { trim: null; thresholds: null; notify: null; pipeSize: null; threadName: null; reason: string };

/** glibc's own starting thresholds (128 KiB each), put back when a relay stops keeping freed memory. */
export const GLIBC_HEAP_THRESHOLDS: Readonly<HeapThresholds> = Object.freeze({ trim: 128 * 1024, mmap: 128 * 1024 });

/**
 * The thresholds a relay sets while it carries streams (protocol/idle-memory.ts): free() leaves up
 * to 256 MiB free at the top of glibc's heap instead of handing it back at once, and allocations up
 * to 32 MiB (glibc's own ceiling for its moving threshold) come from the heap, not from mappings of
 * their own that are unmapped again when freed.
 *
 * A relay's socket buffers die in bulk, when a garbage collection finds tens of MB of them dead at
 * once; the heap's top is then free, glibc gives it back, and the next reads fault the same pages in
 * again, each zeroed by the kernel. And a batch of frames written to a TLS socket is joined into one
 * buffer (Node's StreamBase::Write), often over 128 KiB: a fresh mapping each time. Measured (issue
 * 6, seventeenth round: `node bench/per-process.mjs`, one 2 GiB transfer, minor faults from
 * /proc/PID/stat over 4 s and where they fall by `perf record -e page-faults`): the agent receiving
 * 10,200-18,900 faults/s at 3.2-4.1 ns/B with glibc's thresholds, with a 64 MiB trim threshold
 * 1,100-1,700 and 2.2-3.0 ns/B (16 MiB: 11,500-15,300); the agent sending, with 64 MiB, 400 in one
 * run and 19,000 in another at 3.45 ns/B (the GC's swings outgrew it), with 256 MiB 200-480 in
 * four. What it costs: up to this much freed memory stays resident while streams are open (a peak's
 * memory, never more than the peak); the idle trim gives it all back.
 */
export const RELAY_HEAP_THRESHOLDS: Readonly<HeapThresholds> = Object.freeze({ trim: 256 * 1024 * 1024, mmap: 32 * 1024 * 1024 });

declare const __DEVSTREAMS_SEA__: boolean | undefined;
const sea = typeof __DEVSTREAMS_SEA__ === 'boolean' && __DEVSTREAMS_SEA__;

/** The helper's file name for this machine, as scripts/native.mjs names it. */
export const MALLOC_TRIM_ADDON = `malloc-trim-linux-${process.arch}.node`;

let loaded: MallocTrimLoad | undefined;

/** Loads the helper once per process (on first use: nothing is read at start-up). */
export function loadMallocTrim(): MallocTrimLoad {
  loaded ??= process.platform === 'linux' ? (sea ? fromExecutable() : loadMallocTrimFrom(devBuildFile())) : unavailable(`no glibc on ${process.platform}`);
  return loaded;
}

/** Loads the helper from a file (the development build's, or a test's). */
export function loadMallocTrimFrom(file: string): MallocTrimLoad {
  try {
    const module = { exports: {} as { trim?: unknown; thresholds?: unknown; notify?: unknown; pipeSize?: unknown; threadName?: unknown } };
    process.dlopen(module, file);
    const { trim, thresholds, notify, pipeSize, threadName } = module.exports;
    if (typeof trim !== 'function') return unavailable(`${file} has no trim function`);
    if (typeof thresholds !== 'function') return unavailable(`${file} has no thresholds function (an older helper)`);
    if (typeof notify !== 'function') return unavailable(`${file} has no notify function (an older helper)`);
    if (typeof pipeSize !== 'function') return unavailable(`${file} has no pipeSize function (an older helper)`);
    if (typeof threadName !== 'function') return unavailable(`${file} has no threadName function (an older helper)`);
    return {
      trim: trim as MallocTrim,
      thresholds: thresholds as MallocThresholds,
      notify: notify as SdNotifySend,
      pipeSize: pipeSize as PipeSize,
      threadName: threadName as ThreadName,
    };
  } catch (err) {
    return unavailable(firstLine(err));
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
    return unavailable(`this executable has no ${MALLOC_TRIM_ADDON}: ${(err as Error).message}`);
  }
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'devstreams-native-'));
    const file = join(dir, MALLOC_TRIM_ADDON);
    writeFileSync(file, new Uint8Array(bytes), { mode: 0o500, flag: 'wx' });
    return loadMallocTrimFrom(file);
  } catch (err) {
    return unavailable(firstLine(err));
  } finally {
    // Loaded, the library stays mapped: the file and its directory can go.
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

function unavailable(reason: string): MallocTrimLoad {
  return { trim: null, thresholds: null, notify: null, pipeSize: null, threadName: null, reason };
}

function firstLine(err: unknown): string {
  return String((err as Error).message ?? err).split('\n', 1)[0] ?? '';
}
