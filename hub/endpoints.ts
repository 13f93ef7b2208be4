import { MUX_DEVICE_PATH, MUX_SERVICE_PATH, apiPaths, type HubEndpoints } from '../protocol/index.js';

/**
 * The hub's public endpoints (`GET /api/v1/endpoints`, `devstreams endpoints`): what devices and
 * services dial, and the TCP ports a firewall must let through. `publicUrl` is the https URL
 * devices and services use; `mqttsPort` is the MQTT-over-TLS listener's port, if there is one
 * (announced on the public URL's host); `multiplex`: whether the hub offers the multiplexed
 * endpoints (relay.multiplex).
 */
export function hubEndpoints(publicUrl: URL, mqttsPort: number | null, multiplex = true): HubEndpoints {
  const api = new URL(apiPaths.devices.replace(/\/devices$/, ''), publicUrl).href;
  const wss = new URL(publicUrl.href);
  wss.protocol = 'wss:';
  const streaming = `${new URL(apiPaths.streams, wss).href}/{streamId}/connect`;
  const connect = `${new URL(apiPaths.devices, wss).href}/{deviceId}/streams/connect`;
  const relayService = multiplex ? new URL(MUX_SERVICE_PATH, wss).href : null;
  const relayDevice = multiplex ? new URL(MUX_DEVICE_PATH, wss).href : null;
  const mqttWebSocket = new URL(apiPaths.mqtt, wss).href;
  const tlsPort = Number(publicUrl.port || 443);
  const ports: HubEndpoints['ports'] = [
    { port: tlsPort, protocol: 'tcp', carries: ['https (REST API)', 'wss (stream relay)', 'wss (MQTT over WebSocket)'] },
  ];
  let mqtts: string | null = null;
  if (mqttsPort !== null) {
    mqtts = `mqtts://${publicUrl.hostname}:${mqttsPort}`; // an IPv6 hostname keeps its brackets
    ports.push({ port: mqttsPort, protocol: 'tcp', carries: ['mqtts (MQTT over TLS)'] });
  }
  return { api, streaming, connect, relayService, relayDevice, mqttWebSocket, mqtts, ports };
}
