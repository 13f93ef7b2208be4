import { describe, expect, it } from 'vitest';
import type { DeviceInfo, StreamRecord } from '../../protocol/index.js';
import { formatAgo, formatBytes, formatDevices, formatDuration, formatStreams, formatTable } from '../../service/tables.js';

const NOW = 1_700_000_000_000;

describe('tables', () => {
  it('formats the devices table', () => {
    const devices: DeviceInfo[] = [
      { id: 'pi-kitchen', online: true, lastSeen: NOW - 12_000, agentVersion: '0.1.0', openStreams: 2, uptimeSec: 3600 },
      { id: 'gw-7', online: false, lastSeen: null, agentVersion: null, openStreams: null },
      { id: 'gw-8', online: false, lastSeen: NOW - 60_000, agentVersion: '0.1.0', openStreams: null, disabled: true },
    ];
    expect(formatDevices(devices, NOW)).toBe(
      [
        'ID          STATE     LAST SEEN  VERSION  SYSTEM UPTIME  STREAMS',
        'pi-kitchen  online    12s ago    0.1.0    1h00m          2',
        'gw-7        offline   never      -        -              -',
        'gw-8        disabled  1m ago     0.1.0    -              -',
        '',
      ].join('\n'),
    );
  });

  it('formats the streams table', () => {
    const base = { status: 200, code: 'OK', reason: '', closedAt: NOW };
    const streams: StreamRecord[] = [
      {
        ...base, streamId: 'abcdefghijklmnopqrstuv', device: 'pi-kitchen', service: 'ssh', requestedBy: 'ops', result: 'ok', closedBy: 'service',
        openedAt: NOW - 5 * 60_000, durationMs: 302_000, bytesToDevice: 1536, bytesFromDevice: 12 * 1024 * 1024,
      },
      {
        ...base, streamId: 'ZYXWVUTSRQPONMLKJIHGFE', device: 'gw-7', service: 'plc', result: 'refused', status: 403,
        code: 'SERVICE_DENIED', closedBy: 'none', openedAt: NOW - 3_000, durationMs: 40, bytesToDevice: 0, bytesFromDevice: 0,
        reason: 'service "plc" is not allowed on this device',
      },
      {
        ...base, streamId: 'errerrerrerrerrerrerrr', device: 'gw-7', service: 'ssh', result: 'error', status: 502,
        code: 'PEER_GONE', closedBy: 'device', openedAt: NOW - 2_000, durationMs: 900, bytesToDevice: 0, bytesFromDevice: 0,
        reason: `agent went away\n${'x'.repeat(80)}`,
      },
    ];
    expect(formatStreams(streams, NOW)).toBe(
      [
        'STREAM    DEVICE      SERVICE  BY   RESULT   CODE            CLOSED BY  DURATION  BYTES ->DEV  BYTES <-DEV  OPENED  REASON',
        'abcdefgh  pi-kitchen  ssh      ops  ok       OK              service    5m02s     1.5 KiB      12.0 MiB     5m ago  -',
        'ZYXWVUTS  gw-7        plc      -    refused  SERVICE_DENIED  none       40ms      0 B          0 B          3s ago  service "plc" is not allowed on this device',
        `errerrer  gw-7        ssh      -    error    PEER_GONE       device     900ms     0 B          0 B          2s ago  agent went away ${'x'.repeat(41)}...`,
        '',
      ].join('\n'),
    );
  });

  it('prints only the header for an empty list', () => {
    expect(formatDevices([], NOW)).toBe('ID  STATE  LAST SEEN  VERSION  SYSTEM UPTIME  STREAMS\n');
  });

  it('keeps control characters from the network off the terminal', () => {
    const out = formatTable(['A', 'B'], [['x\u001b[31mred', 'y\nz']]);
    expect(out).toBe('A          B\nx [31mred  y z\n');
  });

  it('formats times, durations and sizes', () => {
    expect([500, 12_000, 59_999, 5 * 60_000, 3 * 3_600_000, 4 * 86_400_000].map(formatAgo)).toEqual([
      'just now', '12s ago', '59s ago', '5m ago', '3h ago', '4d ago',
    ]);
    expect([0, 850, 12_340, 59_990, 302_000, 3_840_000].map(formatDuration)).toEqual([
      '0ms', '850ms', '12.3s', '0m59s', '5m02s', '1h04m',
    ]);
    expect([0, 512, 1536, 12 * 1024 * 1024, 3.2 * 1024 ** 3].map(formatBytes)).toEqual([
      '0 B', '512 B', '1.5 KiB', '12.0 MiB', '3.2 GiB',
    ]);
  });
});
