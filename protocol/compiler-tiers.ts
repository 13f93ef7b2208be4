import { setFlagsFromString } from 'node:v8';

/**
 * V8's optimizing compilers in the agent: Maglev held back while the agent has carried no stream,
 * TurboFan never run.
 *
 * An idle agent runs timers: the control channel's keepalive, the status report, the watchdog. None
 * of that is hot enough to gain from optimized code. But start-up is: the agent's program requires
 * some 145 of Node's built-in modules, and Node's `requireBuiltin` gets hot enough that Maglev
 * compiles it, which pages Maglev's own machine code (1.5 MiB of the Node binary) into the agent's
 * RSS, where it stays for the life of the process. Held back (`--no-maglev --no-turbofan`, set at
 * run time, which V8 reads at each tiering decision), start-up runs on the interpreter and Sparkplug
 * alone and the compilers' pages are never read. Turning off Maglev alone is worse: TurboFan then
 * compiles the same function, and its pages cost more (docs/OPERATIONS.md "Agent footprint").
 *
 * The first stream releases Maglev, which optimizes the data path within its first milliseconds.
 * TurboFan stays off: its machine code is the largest part of the binary a process pages in
 * (4.8 MiB of an agent idle after work, `node bench/idle.mjs --load --rss-map`), and on the agent's
 * data path, where the bytes go through OpenSSL and the kernel, Maglev's code carries them for the
 * same CPU. With no optimizing compiler at all, eight streams up cost the agent half as much again.
 * Maglev's one known cost here: it defines an object literal's symbol-keyed properties through
 * V8's runtime, and Node's `process.nextTick` builds its tick object that way (8 % of the agent's
 * CPU on one stream up). TurboFan for `nextTick` alone (`--turbo-filter=nextTick`) took 4-5 % off
 * the agent's CPU per byte and paged in 5.5 MB of TurboFan's code for good: not taken (issue 6,
 * twenty-third round, bench/HISTORY.md).
 * bin/devstreams.ts holds them for `devstreams agent` before the agent's program loads; the agent
 * releases Maglev when its stream table first holds a stream. Nothing else holds them, so in any
 * other process (the hub, the service side, the SDK, tests that run an agent in-process)
 * releaseMaglev() changes nothing.
 *
 * Measured (issue 6, x64): held until the first stream (twentieth round; `node bench/idle.mjs --exe
 * COPY --cold --seconds 20`, three alternating pairs), the idle agent 63.7, 64.3, 63.7 -> 62.0,
 * 62.0, 61.7 MB, its file-backed part 46.2 -> 44.1 MB, start-up CPU 120-140 ms either way. TurboFan
 * kept off (twenty-first round): docs/OPERATIONS.md "Agent footprint" and bench/HISTORY.md.
 */
let held = false;

/** Turns Maglev off until releaseMaglev(), and TurboFan for good. */
export function holdOptimizingCompilers(setFlags: (flags: string) => void = setFlagsFromString): void {
  setFlags('--no-maglev');
  setFlags('--no-turbofan');
  held = true;
}

/** Puts Maglev back on, TurboFan staying off, if holdOptimizingCompilers() held them; true if it did. */
export function releaseMaglev(setFlags: (flags: string) => void = setFlagsFromString): boolean {
  if (!held) return false;
  setFlags('--maglev');
  held = false;
  return true;
}

/** Whether the hold is still on, Maglev included (for tests). */
export function optimizingCompilersHeld(): boolean {
  return held;
}
