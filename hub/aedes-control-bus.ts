import type { AedesPublishPacket } from 'aedes';
import type { Logger } from '../protocol/index.js';
import type { Broker } from './broker.js';
import type { ControlBus, MessageHandler, PublishOptions } from './control-bus.js';

/** ControlBus on the embedded broker: publishes and subscribes inside the process, no connection. */
export class AedesControlBus implements ControlBus {
  private readonly broker: Broker;
  private readonly log: Logger;

  constructor(opts: { broker: Broker; log: Logger }) {
    this.broker = opts.broker;
    this.log = opts.log.child({ component: 'control-bus' });
  }

  publish(topic: string, payload: string | Buffer, opts: PublishOptions): Promise<void> {
    const aedes = this.broker.aedes;
    return new Promise((resolve, reject) => {
      aedes.publish(
        {
          cmd: 'publish',
          topic,
          payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
          qos: opts.qos,
          retain: opts.retain ?? false,
          dup: false,
        },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  subscribe(filter: string, handler: MessageHandler): Promise<() => Promise<void>> {
    const aedes = this.broker.aedes;
    const deliver = (packet: AedesPublishPacket, cb: () => void): void => {
      try {
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        handler(packet.topic, payload);
      } catch (err) {
        this.log.error({ topic: packet.topic, err: (err as Error).message }, 'control message handler failed');
      }
      cb();
    };
    return new Promise((resolve) => {
      aedes.subscribe(filter, deliver, () => {
        resolve(
          () =>
            new Promise<void>((done) => {
              if (aedes.closed) return done();
              aedes.unsubscribe(filter, deliver, () => done());
            }),
        );
      });
    });
  }
}
