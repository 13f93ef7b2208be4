// Stream set-up with a far-away hub (bench/wan.mjs and the full run): devstreams started with its
// hub behind bench/lib/delay-proxy.mjs, which adds `rttMs` to every connection to the hub (MQTT,
// API and relay, from the agent and from the service side), then `streams` set-ups one after another.
import { startDevstreams } from './stack.mjs';
import * as load from './load.mjs';
import { pct } from './stats.mjs';

/** Set-up times (connect to `devstreams forward` to the first byte echoed back) over a slow link. */
export async function wanSetup(targetPort, { rttMs = 50, streams = 40, maxS = 120 } = {}) {
  const path = await startDevstreams(targetPort, { rttMs });
  try {
    await load.setupTimes(path.port, 3); // warm-up: TLS sessions, the keep-alive connection to the API
    const { times, errors } = await load.setupTimes(path.port, streams, maxS);
    return { rttMs, n: times.length, p50: pct(times, 0.5), p90: pct(times, 0.9), errors };
  } finally {
    await path.stop();
  }
}
