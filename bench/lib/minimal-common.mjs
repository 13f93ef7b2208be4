// What the two floor tunnels (bench/lib/minimal-tunnel.mjs, one connection per stream, and
// bench/lib/minimal-mux-tunnel.mjs, one per side) share, so that they are measured on equal terms.
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

/** Backpressure: a sender pauses while the WebSocket it writes to has more than this unsent. */
export const HIGH_WATER = 1 << 20;

/**
 * Process set-up for a role (relay, agent, service): the same garbage-collection setting as
 * devstreams' hub and service side (protocol/gc-tuning.ts), the agent side keeping V8's default like
 * the agent; and a clean exit on SIGTERM, so that --cpu-prof (bench/per-process.mjs --node-args)
 * writes its profile.
 */
export function setUpProcess(role) {
  if ((role === 'relay' || role === 'service') && Number(process.versions.v8.split('.')[0]) >= 13) {
    setFlagsFromString('--external-memory-accounted-in-global-limit');
  }
  process.on('SIGTERM', () => process.exit(0));
}

/** ws client options: the dev CA, no compression (as devstreams). */
export const wsOptions = (ca) => ({ secureContext: tls.createSecureContext({ ca: readFileSync(ca) }), perMessageDeflate: false });

/** The relay: messages of `a` sent on `b` as they came, pausing `a` while `b` has more than HIGH_WATER unsent. */
export function forward(a, b) {
  a.on('message', (d, binary) => {
    b.send(d, { binary }, () => {
      if (a.isPaused && b.bufferedAmount < HIGH_WATER) a.resume();
    });
    if (b.bufferedAmount >= HIGH_WATER) a.pause();
  });
}
