/**
 * The hub's view of the MQTT control channel. The embedded broker implements it today
 * (aedes-control-bus.ts); an mqtt.js client for an external broker will implement it too, so the
 * rest of the hub uses only this interface.
 */
export interface PublishOptions {
  qos: 0 | 1;
  retain?: boolean;
}

export type MessageHandler = (topic: string, payload: Buffer) => void;

export interface ControlBus {
  /** Resolves once the broker has taken the message (for QoS 1: it is stored or delivered). */
  publish(topic: string, payload: string | Buffer, opts: PublishOptions): Promise<void>;
  /** Subscribes a topic filter (MQTT wildcards allowed); resolves to the matching unsubscribe. */
  subscribe(filter: string, handler: MessageHandler): Promise<() => Promise<void>>;
}
