import type { Logger } from '../protocol/index.js';
import type { ControlBus } from './control-bus.js';
import { HUB_ROLE, MosquittoDynsec, deviceRole, type BrokerClient } from './mosquitto-dynsec.js';
import type { DeviceRegistry } from './registry.js';

/**
 * Hub component (after the control bus, with `mqtt.accounts: mosquitto-dynsec`): keeps the
 * broker's device accounts in step with the registry, the source of truth, while the hub runs.
 *  - At start: gives the hub's own account the hub role (so a fresh dynsec setup needs only the
 *    admin account), then reconciles: a device disabled in the registry is disabled at the broker
 *    (which disconnects it), an enabled one enabled, and a device account this hub made (it holds
 *    the role `devstreams-device-ID`) whose device is no longer registered is deleted. The admin
 *    commands do the same on each change; this covers changes made while the hub was down, a
 *    failed broker update, and a registry file copied in from elsewhere (docs/SCALE.md).
 *  - After every registry reload: the same reconcile (coalesced; one at a time).
 * A registered device without a broker account cannot be created here (the hub holds no device
 * keys, only signing keys derived from them): it is logged with the repair (`hub rotate-key`).
 * Failures are logged, not fatal: the hub's account may lack dynsec rights (docs/SCALE.md).
 */

export interface ReconcilePlan {
  disable: string[];
  enable: string[];
  remove: string[];
  /** Registered devices with no broker account. */
  missing: string[];
}

/** What to change at the broker so its device accounts match the registry (pure). */
export function planReconcile(registry: ReadonlyMap<string, { disabled: boolean }>, clients: readonly BrokerClient[]): ReconcilePlan {
  const plan: ReconcilePlan = { disable: [], enable: [], remove: [], missing: [] };
  const byName = new Map(clients.map((c) => [c.username, c]));
  for (const [id, entry] of registry) {
    const c = byName.get(id);
    if (!c) plan.missing.push(id);
    else if (entry.disabled && !c.disabled) plan.disable.push(id);
    else if (!entry.disabled && c.disabled) plan.enable.push(id);
  }
  for (const c of clients) {
    if (!registry.has(c.username) && c.roles.includes(deviceRole(c.username))) plan.remove.push(c.username);
  }
  return plan;
}

export class MosquittoAccounts {
  private readonly dynsec: MosquittoDynsec;
  private readonly registry: DeviceRegistry;
  private readonly username: string;
  private readonly log: Logger;
  private running: Promise<void> | null = null;
  private again = false;
  private active = false;

  constructor(opts: { bus: ControlBus; registry: DeviceRegistry; username: string; log: Logger }) {
    this.dynsec = new MosquittoDynsec({ bus: opts.bus, timeoutMs: 5000 });
    this.registry = opts.registry;
    this.username = opts.username;
    this.log = opts.log.child({ component: 'mosquitto-dynsec' });
    this.registry.onChange(() => this.schedule());
  }

  async start(): Promise<void> {
    try {
      await this.dynsec.start();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot use the dynamic security plugin: broker accounts are not kept in step');
      return;
    }
    try {
      const added = await this.dynsec.ensureHubAccount(this.username);
      // Adding it made Mosquitto disconnect the hub once (a warning above); it reconnected at once.
      this.log.info({ role: HUB_ROLE, added }, added ? 'hub role given to the hub broker account' : 'hub broker account has the hub role');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not check the hub role at the broker');
    }
    await this.reconcile(true);
    this.active = true;
  }

  async stop(): Promise<void> {
    this.active = false;
    await this.running;
    await this.dynsec.stop().catch(() => undefined);
  }

  private schedule(): void {
    if (!this.active) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.reconcile(false);
      } while (this.again && this.active);
    })().finally(() => (this.running = null));
  }

  /** One reconcile; logs what it changed. `reportMissing` only at start (add-device creates the account right after writing the registry). */
  private async reconcile(reportMissing: boolean): Promise<void> {
    try {
      const registry = new Map(this.registry.ids().map((id) => [id, { disabled: this.registry.get(id)?.disabled ?? false }]));
      const plan = planReconcile(registry, await this.dynsec.listClients());
      for (const id of plan.disable) await this.dynsec.setEnabled(id, false);
      for (const id of plan.enable) await this.dynsec.setEnabled(id, true);
      for (const id of plan.remove) await this.dynsec.removeDevice(id);
      const changed = { disabled: plan.disable, enabled: plan.enable, removed: plan.remove };
      if (plan.disable.length + plan.enable.length + plan.remove.length > 0) this.log.info(changed, 'broker accounts brought in step with the registry');
      if (reportMissing && plan.missing.length > 0) {
        this.log.warn(
          { devices: plan.missing.slice(0, 20), count: plan.missing.length },
          'registered devices without a broker account (the hub holds no device keys): run `devstreams hub rotate-key ID` for each',
        );
      }
      this.log.info({ devices: registry.size, changed: plan.disable.length + plan.enable.length + plan.remove.length }, 'broker accounts reconciled');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not reconcile the broker accounts with the registry');
    }
  }
}
