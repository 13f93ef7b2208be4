/** Size and time bounds shared by all parties. Every network input is checked against these. */
export const LIMITS = Object.freeze({
  /** Largest MQTT control payload (stream request, response, status) any party accepts. */
  maxControlPayloadBytes: 8 * 1024,
  /** Largest JSON body the REST API reads. */
  maxApiBodyBytes: 16 * 1024,
  /** Largest text (control) frame on a stream WebSocket. */
  maxControlFrameBytes: 1024,
  /** Largest binary frame on a stream WebSocket (ws maxPayload). */
  maxDataFrameBytes: 1024 * 1024,
  /** Backpressure high-water mark on a stream WebSocket's send buffer (see PERFORMANCE-NOTES). */
  wsHighWaterMark: 1024 * 1024,
  /** Handshake deadline bounds (ms) a request may ask for. */
  minHandshakeMs: 1_000,
  maxHandshakeMs: 10 * 60_000,
  /** A device whose clock is behind the hub's by more than this treats requests as expired. */
  maxClockSkewMs: 30_000,
  /** Length of a device id, a service name and a service spec. */
  maxDeviceIdLength: 64,
  maxServiceNameLength: 32,
  maxServiceSpecLength: 261,
  /** Network interfaces listed in a device status (keeps the status well under 8 KiB). */
  maxStatusInterfaces: 8,
});
