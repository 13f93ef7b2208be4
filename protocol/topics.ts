import type { DeviceStatusMessage, StreamRequest, StreamResponse } from './messages.js';

/** All topics live under one device-scoped prefix, so one broker ACL line isolates devices. */
export const TOPIC_ROOT = 'devstreams/v1/devices' as const;

export const topics = {
  /** hub -> device, QoS 1 */
  streamRequest: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/streams/request`,
  /** device -> hub, QoS 1. A hub node asks for answers on `.../streams/response/{nodeId}`. */
  streamResponse: (deviceId: string, nodeId?: string) =>
    `${TOPIC_ROOT}/${deviceId}/streams/response${nodeId ? `/${nodeId}` : ''}`,
  /** device -> hub, retained; the last will marks the device offline. */
  status: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/status`,
  /** Everything a device may touch (the ACL pattern `devstreams/v1/devices/%u/#`). */
  deviceTree: (deviceId: string) => `${TOPIC_ROOT}/${deviceId}/#`,
} as const;

/** Wildcard subscriptions the hub uses. */
export const hubSubscriptions = {
  status: `${TOPIC_ROOT}/+/status`,
  responses: (nodeId: string) => `${TOPIC_ROOT}/+/streams/response/${nodeId}`,
} as const;

export type TopicKind = 'streamRequest' | 'streamResponse' | 'status';

/** The payload type carried by each kind of topic. */
export interface TopicPayloads {
  streamRequest: StreamRequest;
  streamResponse: StreamResponse;
  status: DeviceStatusMessage;
}

export interface ParsedTopic {
  deviceId: string;
  kind: TopicKind;
  /** For a response topic: the hub node the answer is addressed to, if any. */
  nodeId?: string;
}

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Parses a concrete topic into its device and kind, or returns null if it is not one of ours. */
export function parseTopic(topic: string): ParsedTopic | null {
  if (!topic.startsWith(`${TOPIC_ROOT}/`)) return null;
  const parts = topic.slice(TOPIC_ROOT.length + 1).split('/');
  const [deviceId, a, b, c, ...rest] = parts;
  if (!deviceId || !SEGMENT.test(deviceId) || rest.length > 0) return null;
  if (a === 'status' && b === undefined) return { deviceId, kind: 'status' };
  if (a !== 'streams') return null;
  if (b === 'request' && c === undefined) return { deviceId, kind: 'streamRequest' };
  if (b === 'response' && c === undefined) return { deviceId, kind: 'streamResponse' };
  if (b === 'response' && c !== undefined && SEGMENT.test(c)) return { deviceId, kind: 'streamResponse', nodeId: c };
  return null;
}

/** True if `topic` is a response topic belonging to `deviceId` (used by the agent to check replyTo). */
export function isOwnResponseTopic(topic: string, deviceId: string): boolean {
  const parsed = parseTopic(topic);
  return parsed !== null && parsed.kind === 'streamResponse' && parsed.deviceId === deviceId;
}
