import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IDLE_RECLAIM_MS, RELAY_HEAP_THRESHOLDS, TRIM_AFTER_GC_MS } from '../../protocol/index.js';
import { DevstreamsClient } from '../../service/index.js';
import type { CliProcess } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';
import { echoTarget, type Target } from '../helpers/targets.js';
import { roundTrip, sha256 } from '../helpers/streams.js';

/**
 * protocol/idle-memory.ts with the hub and the agent as real processes (the development build, whose
 * native helper is dist/native/): once no stream has been open for 10 s, the agent runs one full
 * collection and then glibc's malloc_trim, which hands the heap a stream's buffers took back to the
 * kernel; the hub runs the trim alone. The hub's wiring (hub/cli.ts: the relay's streams pair and
 * end) and the agent's (agent/agent.ts: its stream table) are what this checks; the timing rules
 * are unit-tested.
 */

const IDLE = 'idle: memory given back';

/** The first `IDLE` line `proc` logs at or after `since` (pino's `time`, ms). */
function idleLineSince(proc: CliProcess, since: number, timeoutMs: number): Promise<Record<string, unknown>> {
  const match = (l: string): boolean => {
    if (!l.includes(`"msg":"${IDLE}"`)) return false;
    return (JSON.parse(l) as { time: number }).time >= since;
  };
  return proc.waitForLine(match, timeoutMs).then((l) => JSON.parse(l) as Record<string, unknown>);
}

describe.skipIf(process.platform !== 'linux')('idle processes give memory back', () => {
  const stack = new Stack();
  let echo: Target;

  beforeAll(async () => {
    echo = await echoTarget();
    await stack.start([{ id: 'pi-idle', allow: [`tcpecho=${echo.port}`] }]);
  });
  afterAll(async () => {
    await stack.stop();
    await echo?.close();
  });

  it("after a stream of 16 MiB each way, the hub trims glibc's heap once idle, the agent collects and trims", async () => {
    const c = new DevstreamsClient({ hub: stack.hubUrl, token: stack.token, ca: readFileSync(stack.caFile) });
    const payload = randomBytes(16 * 1024 * 1024);
    try {
      const s = await c.openStream('pi-idle', 'tcpecho');
      expect(sha256(await roundTrip(s, payload))).toBe(sha256(payload));
    } finally {
      c.close();
    }
    const ended = Date.now();
    const bound = IDLE_RECLAIM_MS + TRIM_AFTER_GC_MS + 15_000;
    const [hub, agent] = await Promise.all([idleLineSince(stack.hub, ended, bound), idleLineSince(stack.agents.get('pi-idle')!, ended, bound)]);
    for (const [who, line] of [['hub', hub], ['agent', agent]] as const) {
      expect(line.trimmed, `${who}: ${JSON.stringify(line)}`).toBe(true);
      expect(line.rssAfter as number, who).toBeLessThan(line.rssBefore as number);
    }
    // The agent collects first; the hub only trims (no forced collection: protocol/idle-memory.ts).
    expect(agent.gcMs).toBeTypeOf('number');
    expect(hub.gcMs).toBeNull();
    // While the stream was open, both kept freed memory for the next reads (protocol/malloc-trim.ts).
    for (const proc of [stack.hub, stack.agents.get('pi-idle')!]) {
      const set = proc.logs("busy: glibc's heap thresholds");
      expect(set.map((l) => [l.trimThreshold, l.mmapThreshold, l.set])).toEqual([[RELAY_HEAP_THRESHOLDS.trim, RELAY_HEAP_THRESHOLDS.mmap, true]]);
    }
    expect(stack.hub.logs('glibc heap not tuned or trimmed (native helper unavailable)')).toEqual([]);
    expect(stack.agents.get('pi-idle')!.logs('glibc heap not tuned or trimmed (native helper unavailable)')).toEqual([]);
  }, 60_000);
});
