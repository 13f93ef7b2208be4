import type { SqlValue } from 'sql.js';
import { MAX_STREAM_QUERY_LIMIT, type StreamQuery, type StreamRecord } from '../protocol/index.js';

/** The stream history's SQL: table, row mapping and the filtered query. */

export const HISTORY_SCHEMA_VERSION = 1;

export const HISTORY_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS streams (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  stream_id TEXT NOT NULL,
  device TEXT NOT NULL,
  service TEXT NOT NULL,
  requested_by TEXT,
  result TEXT NOT NULL,
  status INTEGER NOT NULL,
  code TEXT NOT NULL,
  reason TEXT NOT NULL,
  closed_by TEXT NOT NULL,
  opened_at INTEGER NOT NULL,
  closed_at INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  bytes_to_device INTEGER NOT NULL,
  bytes_from_device INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS streams_device_opened ON streams (device, opened_at);
CREATE INDEX IF NOT EXISTS streams_opened ON streams (opened_at);
CREATE INDEX IF NOT EXISTS streams_closed ON streams (closed_at);
`;

export const INSERT_SQL = `INSERT INTO streams (stream_id, device, service, requested_by, result, status, code, reason,
  closed_by, opened_at, closed_at, duration_ms, bytes_to_device, bytes_from_device)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

export function toParams(r: StreamRecord): SqlValue[] {
  return [
    r.streamId, r.device, r.service, r.requestedBy ?? null, r.result, r.status, r.code, r.reason,
    r.closedBy, r.openedAt, r.closedAt, r.durationMs, r.bytesToDevice, r.bytesFromDevice,
  ];
}

export function fromRow(row: Record<string, SqlValue>): StreamRecord {
  return {
    streamId: String(row.stream_id),
    device: String(row.device),
    service: String(row.service),
    result: String(row.result) as StreamRecord['result'],
    status: Number(row.status),
    code: String(row.code),
    reason: String(row.reason),
    closedBy: String(row.closed_by) as StreamRecord['closedBy'],
    openedAt: Number(row.opened_at),
    closedAt: Number(row.closed_at),
    durationMs: Number(row.duration_ms),
    bytesToDevice: Number(row.bytes_to_device),
    bytesFromDevice: Number(row.bytes_from_device),
    requestedBy: row.requested_by === null || row.requested_by === undefined ? null : String(row.requested_by),
  };
}

/**
 * What a service token may see of the history: records of devices its device globs match and of
 * services its service scope names (`*`: all). Part of the query, so that LIMIT counts only records
 * the token may see.
 */
export interface HistoryScope {
  devices: readonly string[];
  services: readonly string[];
}

/**
 * The SELECT for a query: every filter bound as a parameter, newest first, bounded. A device glob
 * (`*` and `?` over id characters, hub/service-tokens.ts) means the same to SQLite's GLOB, which is
 * case-sensitive like the hub's own match; a service scope is matched exactly.
 */
export function queryOf(q: StreamQuery, scope?: HistoryScope): { sql: string; params: SqlValue[] } {
  const where: string[] = [];
  const params: SqlValue[] = [];
  if (scope && !scope.devices.includes('*')) {
    where.push(scope.devices.length ? `(${scope.devices.map(() => 'device GLOB ?').join(' OR ')})` : '0');
    params.push(...scope.devices);
  }
  if (scope && !scope.services.includes('*')) {
    where.push(scope.services.length ? `service IN (${scope.services.map(() => '?').join(', ')})` : '0');
    params.push(...scope.services);
  }
  if (q.device !== undefined) {
    where.push('device = ?');
    params.push(q.device);
  }
  if (q.since !== undefined) {
    where.push('opened_at >= ?');
    params.push(q.since);
  }
  if (q.result !== undefined) {
    where.push('result = ?');
    params.push(q.result);
  }
  params.push(Math.min(q.limit ?? MAX_STREAM_QUERY_LIMIT, MAX_STREAM_QUERY_LIMIT));
  const filter = where.length ? `WHERE ${where.join(' AND ')}` : '';
  return { sql: `SELECT * FROM streams ${filter} ORDER BY seq DESC LIMIT ?`, params };
}
