import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * How far V8 lets the heap grow past what a full collection left live before it starts the next
 * one, with external memory counted (below): 1,000 % (a factor of 11) instead of V8's own factor.
 *
 * V8 picks its factor from how fast the program allocates on its own heap against how fast it
 * collects, and after an idle period it falls low. A relay allocates little on the heap and much
 * outside it (the sockets' buffers), so the factor stayed low through the next transfer: the hub,
 * live heap 23 MB, started a mark-compact for every 20-35 MB carried, 15-28 per 512 MiB, and stayed
 * that way afterwards too, transfer after transfer, where a fresh hub ran none. Its CPU per byte
 * rose from 1.3-1.6 to 2.2-3.3 ns/B; the full benchmark, whose series come a minute apart, measured
 * devstreams mostly in that state. With the fixed factor the hub runs 0-1 per 512 MiB, after an
 * idle period or not (100 % left the agent at 24-29).
 *
 * Measured (issue 6, fifteenth round): one stream of 512 MiB, each after 13 s idle, nine per build
 * in three alternating pairs of stacks: up 233 -> 345 MB/s (median), the three processes' CPU 6.87
 * -> 4.43 ns/B (hub 2.81 -> 1.43, agent 2.35 -> 1.40); down 256 -> 299 MB/s, 6.36 -> 5.06 ns/B.
 * Back to back, without the idle periods, within the noise. The price is garbage kept longer: an
 * agent's peak through `node bench/idle.mjs --load` 252, 256 -> 259, 303 MB, idle afterwards the
 * same (81-83 MB).
 *
 * A factor of 3 still left the agent, live heap 12 MB, a mark-compact for every 50-90 MB it carried
 * (0-10 per 512 MiB, mostly 6-10, each marking on helper threads: V8's concurrent marking and
 * sweeping were 10-15 % of its CPU in `perf`), and `devstreams forward` 1-7. Measured (eighteenth
 * round, `node bench/after-idle.mjs --gcs --gap 2 --cycles 2`, two series of four transfers per
 * value, in two alternating batches, 200 % against 600 % and then 400 % against 1,000 %): the
 * agent's mark-compacts per 512 MiB at 200 %: 10, 6, 1, 0 and 10, 7, 8, 7; 400 %: 5, 5, 7, 5 and 3,
 * 5, 6, 5; 600 %: 1, 2, 0, 0 and 1, 4, 0, 4; 1,000 %: 1, 0, 0, 0 twice. The agent's CPU per byte,
 * mean of the eight, 1.73, 1.53, 1.49, 1.36 ns/B; forward's 1.62 at 200 % and 1.37 at 1,000 %. One
 * stream and eight, 1 GiB each way (two stacks per value, alternating): up 331, 316 -> 363, 342
 * MB/s, down 359, 344 -> 376, 360, eight up 356, 340 -> 401, 393, eight down 383, 352 -> 395, 393.
 * The price is at the hub with many streams: 1,000 streams open at once (`node
 * bench/concurrency.mjs`) peaked at 165, 169 -> 181, 192 MB there; the agent's and forward's peaks
 * stayed where glibc's heap thresholds put them (VmHWM after those transfers: agent 238, 241 ->
 * 241, 246 MB; `node bench/idle.mjs --load`: 278, 271 -> 272, 270 MB).
 */
export const RELAY_HEAP_GROWING_PERCENT = 1000;

/**
 * The heap growing factor of an agent in `gc: memory` mode (boards under 2 GiB with `auto`): 200 %,
 * a factor of 3, where it had V8's own. External memory is not counted in V8's limit there, and
 * since the young-buffer trigger (below) a memory-mode agent's read buffers die in scavenges; what
 * still ran mark-compacts was V8's own factor, which the idle collection leaves low: the agent,
 * live heap about 12 MB, ran one for every 17 MB of old-space growth, 30-37 per 512 MiB carried
 * after each 10 s idle collection. Measured (issue 6, twenty-second round, `node
 * bench/after-idle.mjs --gap 13 --cycles 2 --gcs --memory --agent-gc memory`, two series of four
 * transfers per value): V8's own factor 17-37 mark-compacts per 512 MiB in all eight, the agent
 * 2.91-5.40 ns/B, 132-231 MB/s; 200 % none in all eight, 1.64-2.25 ns/B, 217-307 MB/s; 100 %
 * still 27-30 in five; RSS after each transfer 91-98 MB against 86-97. The peak through `node
 * bench/idle.mjs --load --gc memory` 147.0, 147.2 -> 139.7, 139.5 MB, idle after it 74.3, 74.2 ->
 * 74.0, 73.9 MB (the development build).
 */
export const MEMORY_HEAP_GROWING_PERCENT = 200;

/** A V8 to set flags in: its version, and how flags are set (this process's below; tests give their own). */
export interface V8Flags {
  version: string;
  setFlags: (flags: string) => void;
}

const THIS_V8: V8Flags = { version: process.versions.v8, setFlags: setFlagsFromString };

/** V8 13 and later (Node 24, which the executables carry): where the flags below exist. */
function fromV8_13(v8: V8Flags): boolean {
  return Number(v8.version.split('.')[0]) >= 13;
}

/**
 * Garbage collection for a process that relays bytes: `devstreams hub`, `forward` and `connect`
 * call this first thing at start; the agent when its `runtime.gc` resolves to throughput (see
 * below and agent/gc-mode.ts); the SDK never does (it lives in its user's process and changes no
 * global setting).
 *
 * Every chunk a socket reads is an ArrayBuffer outside V8's heap. From V8 13 (Node 24, which the
 * executables carry) V8 answers that external memory with full mark-compact collections: dozens a
 * second while a stream carries 100+ MB/s, where Node 20's V8 ran cheap scavenges. With
 * --external-memory-accounted-in-global-limit the external bytes count in V8's global heap limit
 * and are collected with the rest. Measured (issue 6; `node bench/per-process.mjs devstreams
 * --mib 256`, Node 24.22.3, 2-core machine, two runs each): one stream up 96, 116 -> 133, 142 MB/s,
 * the hub 8.0, 6.7 -> 4.5, 4.4 ns/B; one stream down 105, 115 -> 183, 161 MB/s.
 *
 * The price is memory: more garbage waits for a collection. Given to the agent too, it took the
 * agent from 3.9-6.5 to 2.8-4.6 ns/B, but an agent that carried 256 MiB each way then peaked at 238
 * MB RSS instead of 174-179 (`node bench/idle.mjs --load`). The agent runs on boards where memory
 * may be the scarcer resource, so it sets this only with 2 GiB of memory or more (`runtime.gc: auto`,
 * the default) or when its config says `throughput`; the hub and the service side run where memory
 * is plentiful, and the hub carries every stream. `on = false` (memory mode, and a reload into it)
 * puts V8's own external-memory handling back, with MEMORY_HEAP_GROWING_PERCENT (above).
 *
 * V8 reads the option when it sizes its next collection, so setting it after start takes effect
 * (the same figures as on the command line). Before V8 13 the option does not exist and nothing is
 * changed. With it goes RELAY_HEAP_GROWING_PERCENT (above). `v8`: the V8 version and how flags are
 * set (tests give their own).
 */
export function tuneGcForRelaying(on = true, v8: V8Flags = THIS_V8): boolean {
  if (!fromV8_13(v8)) return false;
  v8.setFlags(on ? '--external-memory-accounted-in-global-limit' : '--no-external-memory-accounted-in-global-limit');
  v8.setFlags(`--heap-growing-percent=${on ? RELAY_HEAP_GROWING_PERCENT : MEMORY_HEAP_GROWING_PERCENT}`);
  return true;
}

/**
 * How much memory young ArrayBuffers may hold before V8 runs a scavenge for them, in a process that
 * relays (below): 16 MB, where V8's own trigger is 128 MB.
 *
 * Every chunk a TLS socket reads is a fresh ArrayBuffer, and a relay passes it on and drops it
 * within milliseconds: it dies young. V8 frees the memory of young ArrayBuffers at a scavenge, and
 * starts one for their sake when they hold twice its largest semi-space (Heap::
 * AllocateExternalBackingStore): 2 x 64 MB on a 64-bit Node without pointer compression, as
 * Node's builds for x64 and arm64 are. A relay allocates little on V8's own heap, so that was its
 * only trigger: every 128 MB carried, the hub scavenged and glibc got back 128 MB of dead read
 * buffers, which the next 128 MB then took again. Each process's first transfer, and each after an
 * idle trim, faulted those pages in afresh.
 *
 * V8 computes that trigger from `--scavenger-max-new-space-capacity-mb` each time it checks, so
 * setting it at run time moves the trigger alone: the young generation's own size was fixed when
 * the heap was set up. On such a build the flag is a quarter of the trigger (with pointer
 * compression it would be a half).
 * Measured (issue 6, twenty-second round, against the build before; alternating runs):
 * - a fresh stack, 512 MiB per transfer (`node bench/per-process.mjs devstreams --mib 512
 *   --no-ping`, four pairs): one stream up, the first transfer, 150-185 -> 179-245 MB/s, the hub's
 *   page faults 63 -> 3-5 per MB; down 196-247 -> 262-272 MB/s; eight streams within the noise;
 * - the first upload after a warm-up and an idle trim: the hub 3.78 -> 2.20 ns/B, 65 -> 12 faults
 *   per MB, its RSS after it 274 -> 154 MB;
 * - the agent executable through `node bench/idle.mjs --load` (256 MiB each way, 1,000 streams):
 *   its peak 200-201 -> 137 MB (172.8 -> 141.3 in `gc: memory` mode); idle afterwards the same.
 * Triggers of 8, 32 and 64 MB (three fresh stacks each): 8 a little slower, 32 and 64 within the
 * noise of 16 in MB/s, with more memory held.
 */
export const YOUNG_BUFFER_TRIGGER_MB = 16;

/**
 * Lets V8 scavenge a relay's dead read buffers every YOUNG_BUFFER_TRIGGER_MB (above): every process
 * that carries streams (the hub, the agent in either garbage collection mode, `forward` and
 * `connect`) calls it at start; the SDK never does (it changes no global setting of its user's
 * process). Before V8 13 (Node 20) nothing is set. Returns whether it was set.
 */
export function scavengeYoungBuffersEarly(v8: V8Flags = THIS_V8): boolean {
  if (!fromV8_13(v8)) return false;
  v8.setFlags(`--scavenger-max-new-space-capacity-mb=${YOUNG_BUFFER_TRIGGER_MB / 4}`);
  return true;
}

/**
 * V8's own `--bytecode-old-age` in Node 22 and 24 (`node --v8-options`; 5 in Node 20): a function's
 * bytecode may be dropped after this many full collections in which it did not run. Put back after
 * collectGarbage's idle collection, which runs at 1.
 */
export const BYTECODE_OLD_AGE = 6;

/** V8's `gc` function, exposed once on first use (undefined: not tried yet; null: unavailable). */
let gcFunction: ((options?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void) | null | undefined;

/**
 * Runs the idle collection now (V8 12 and later: the last-resort collection, dropping bytecode not
 * in use, below; with `dropBytecode: false`, or on Node 20's V8: one full collection) and returns
 * how long it took (ms), or null where V8's `gc` cannot be had. V8 exposes `gc` to contexts created
 * after `--expose-gc` is set, so it is fetched from a fresh `vm` context; the process's own global
 * gets no `gc`. A full collection also gives back the young generation V8 grew and the old-space
 * pages that only held garbage, which V8's memory reducer may not do for minutes in a process that
 * sleeps.
 */
export function collectGarbage(opts: { dropBytecode?: boolean; v8Version?: string } = {}): number | null {
  const lastResort = (opts.dropBytecode ?? true) && Number((opts.v8Version ?? process.versions.v8).split('.')[0]) >= 12;
  if (gcFunction === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gcFunction = runInNewContext('gc') as NonNullable<typeof gcFunction>;
    } catch {
      gcFunction = null;
    }
  }
  if (!gcFunction) return null;
  // process.hrtime, not performance.now: the global `performance` loads all of perf_hooks.
  const started = process.hrtime.bigint();
  if (lastResort) {
    // V8's last-resort collection (as before it reports out of memory): collections until one frees
    // nothing, each shrinking the heap. With the age at 1 for its duration, the first of them ages
    // every function that is not running and the next drops their bytecode: an idle process keeps
    // none of its start-up's or its last busy period's bytecode. A function run again is compiled
    // again from its source, lazily, as on its first call. (V8's own testing collection, `gc()`
    // without options, drops no bytecode at any age.) Measured (issue 6, twentieth round): the idle
    // agent 59.9-60.1 MB against 61.7-62.0 before (`node bench/idle.mjs --exe COPY --cold`, three
    // alternating pairs), V8's bytecode 1.19 -> 0.13 MB; the collection 19-20 ms instead of 9-11;
    // the first stream after an idle period (`node bench/after-idle.mjs --first-byte`, forward and
    // agent compiling again) 17-27 ms to its first byte against 10-21. `devstreams forward` has kept
    // its bytecode since (dropBytecode: false, service/forward-command.ts): 14.3-18.5 ms against
    // 17.4-29.6 with both dropping it (eight first streams each, alternating).
    setFlagsFromString('--bytecode-old-age=1');
    try {
      gcFunction({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    } finally {
      setFlagsFromString(`--bytecode-old-age=${BYTECODE_OLD_AGE}`);
    }
  } else {
    // Node 20's V8 takes no options: `{ type: 'major' }` collected nothing there.
    gcFunction();
  }
  return Number(process.hrtime.bigint() - started) / 1e6;
}
