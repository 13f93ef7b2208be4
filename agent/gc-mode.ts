import type { AgentConfig } from './config.js';

/**
 * Below this much memory, `runtime.gc: auto` keeps V8's own accounting of external memory (memory
 * mode; its heap grows by a fixed factor of 3 since the twenty-second round); from it on,
 * the agent counts external memory in V8's heap limit (throughput; protocol/gc-tuning.ts).
 *
 * What the choice trades, measured (issue 6):
 * - throughput: the agent's CPU per byte carried 3.6-6.0 -> 2.4-4.7 ns/B (`node bench/per-process.mjs
 *   devstreams --mib 256`, two runs each), and per interactive round trip (1-byte ping-pong, 10,000 times) 258-271 -> 188-211
 *   us, with the round trip's p99 3.4-3.7 -> 2.4-3.1 ms: under V8's default the agent's 14 MB heap ran
 *   a mark-compact every ~400 round trips;
 * - memory: after carrying 256 MiB each way and 1,000 concurrent streams (`node bench/idle.mjs
 *   --load --seconds 20`, two runs each), the agent's peak RSS was 274-287 MB instead of 226-244, and
 *   it stayed at 207-216 MB idle instead of 169 (before the idle trim of the fourteenth round; with
 *   it, 81-83 MB in throughput mode). Throughput mode's fixed heap growing factor (fifteenth round,
 *   protocol/gc-tuning.ts) raised that peak 252-256 -> 259-303 MB.
 * Measured again in the eighteenth round, with glibc keeping freed memory while streams are open
 * (protocol/malloc-trim.ts) and the factor of 11: the peak 163 MB in memory mode against 271 in
 * throughput, idle after it 82.6 against 83.7 MB (`node bench/idle.mjs --load --seconds 20 --gc
 * memory|throughput`); the agent's CPU per byte 2.22-2.63 ns/B (mean 2.41) against 1.23-1.62 (mean
 * 1.46) over eight transfers each (`node bench/after-idle.mjs --agent-gc memory|throughput --gap 2
 * --cycles 2`, two alternating pairs).
 * Some 110 MB at the peak is about 5 % of 2 GiB (a Raspberry Pi 4 or 5, most gateways), a fifth of
 * a 512 MB board, and it goes back when the agent is idle.
 * Since the twenty-second round both modes scavenge dead read buffers every 16 MB
 * (protocol/gc-tuning.ts scavengeYoungBuffersEarly), and the peak through `--load` is the same in
 * either: 131.6-141.3 MB in memory mode, 134.7-139.6 in throughput. The line stays where it is:
 * throughput's fixed growing factor still lets garbage reach 11 times the live heap between
 * collections, in work those runs do not cover as well. What memory mode cost was CPU (after 2 s
 * idle gaps, `node bench/after-idle.mjs --gap 2 --cycles 2 --agent-gc ...`, two pairs: 1.75-4.60
 * ns/B with 27-32 mark-compacts per 512 MiB in six of eight transfers, against 1.45-1.90 and none),
 * until its own fixed growing factor (protocol/gc-tuning.ts MEMORY_HEAP_GROWING_PERCENT) left it
 * none after idle periods of 13 s either: 1.64-2.25 ns/B.
 */
export const AUTO_THROUGHPUT_MIN_MEMORY_BYTES = 2 * 1024 ** 3;

/** The collection mode the agent runs with, for its `runtime.gc` setting on a machine with `totalMemoryBytes`. */
export function gcModeFor(setting: AgentConfig['runtime']['gc'], totalMemoryBytes: number): 'memory' | 'throughput' {
  if (setting !== 'auto') return setting;
  // A little under 2 GiB still counts: the kernel keeps some memory out of what it reports.
  return totalMemoryBytes >= AUTO_THROUGHPUT_MIN_MEMORY_BYTES * 0.9 ? 'throughput' : 'memory';
}
