import { describe } from 'vitest';
import { Mosquitto, haveMosquitto } from '../fleet/mosquitto.js';
import type { StackBroker } from './stack.js';

/** One broker the end-to-end suites run against. */
export interface BrokerCase {
  name: string;
  /** The hub's embedded broker (the reference run: full sizes and counts). */
  embedded: boolean;
  /** Options for `new Stack(...)`: a fresh broker per stack (one per file). */
  stackOptions(): { broker?: StackBroker };
}

const CASES: (BrokerCase & { available: boolean })[] = [
  { name: 'embedded broker', embedded: true, available: true, stackOptions: () => ({}) },
  // Debian's Mosquitto with the dynamic security plugin (hub config `mqtt`, test/fleet/mosquitto.ts).
  { name: 'Mosquitto', embedded: false, available: haveMosquitto, stackOptions: () => ({ broker: new Mosquitto() }) },
];

/**
 * The same suite once per broker: `describe("title [embedded broker]")` and
 * `describe("title [Mosquitto]")` (skipped, and so reported, where Mosquitto is not installed).
 * Each body builds its own Stack from `b.stackOptions()` in its beforeAll.
 */
export function describeEachBroker(title: string, body: (b: BrokerCase) => void): void {
  for (const b of CASES) describe.skipIf(!b.available)(`${title} [${b.name}]`, () => body(b));
}
