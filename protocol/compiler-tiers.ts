import { setFlagsFromString } from 'node:v8';

/**
 * V8's optimizing compilers, Maglev and TurboFan, held back while the agent has carried no stream.
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
 * The first stream releases them: from then on V8 tiers up as it always does, and the data path is
 * optimized within its first milliseconds, as in any fresh process. bin/devstreams.ts holds them
 * for `devstreams agent` before the agent's program loads; the agent releases them when its stream
 * table first holds a stream. Nothing else holds them, so in any other process (the hub, the
 * service side, the SDK, tests that run an agent in-process) release() changes nothing.
 *
 * Measured (issue 6, twentieth round; `node bench/idle.mjs --exe COPY --cold --seconds 20`, three
 * alternating pairs, x64): the idle agent 63.7, 64.3, 63.7 -> 62.0, 62.0, 61.7 MB, its file-backed
 * part 46.2 -> 44.1 MB. Transfers after the first stream ran as before (`node bench/after-idle.mjs`).
 * Start-up costs no more without them: the executable's agent, started cold, used 120-140 ms of CPU
 * from spawn to online either way (three alternating pairs, /proc/PID/stat).
 */
let held = false;

/** Turns Maglev and TurboFan off until release(). */
export function holdOptimizingCompilers(setFlags: (flags: string) => void = setFlagsFromString): void {
  setFlags('--no-maglev');
  setFlags('--no-turbofan');
  held = true;
}

/** Puts V8's optimizing compilers back on if holdOptimizingCompilers() held them; true if it did. */
export function releaseOptimizingCompilers(setFlags: (flags: string) => void = setFlagsFromString): boolean {
  if (!held) return false;
  setFlags('--maglev');
  setFlags('--turbofan');
  held = false;
  return true;
}

/** Whether the compilers are held now (for tests). */
export function optimizingCompilersHeld(): boolean {
  return held;
}
