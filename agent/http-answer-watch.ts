import type { MqttClient } from 'mqtt';

/**
 * mqtts://: tells, for each connection attempt, whether the server answered with `HTTP/`, i.e.
 * hub.url names the hub's HTTPS port, where MQTT.js would only report a parse error ("Invalid header
 * flag bits, must be 0x0 for puback packet"). It looks at the first chunk of each stream MQTT.js
 * builds: the first one exists already, the later ones come from its streamBuilder, wrapped here. The
 * data still flows to MQTT.js.
 */
export function watchForHttpAnswer(client: MqttClient, onAnswer: (http: boolean) => void): void {
  const watch = (stream: NodeJS.ReadableStream): void => {
    onAnswer(false);
    // Prepended: MQTT.js's pipe parses (and fails) in its own 'data' listener, which must not run first.
    stream.prependOnceListener('data', (chunk: Buffer | string) => {
      onAnswer(Buffer.from(chunk.slice(0, 5)).toString('latin1') === 'HTTP/');
    });
  };
  watch(client.stream);
  // streamBuilder is MQTT.js's own (private in its typings); without it only the first attempt is watched.
  const inner = client as unknown as { streamBuilder?: (c: MqttClient) => NodeJS.ReadableStream };
  const build = inner.streamBuilder;
  if (typeof build !== 'function') return;
  inner.streamBuilder = (c) => {
    const stream = build.call(client, c);
    watch(stream);
    return stream;
  };
}
