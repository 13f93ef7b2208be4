import { describe, expect, it } from 'vitest';
import { StreamTable } from '../../hub/stream-table.js';

const add = (t: StreamTable, id: string, device: string) =>
  t.add({ streamId: id, device, service: 'ssh', deviceToken: `d-${id}`, serviceToken: `s-${id}`, openedAt: 0, expiresAt: 60_000 });

describe('StreamTable counts (the limits read them on every request)', () => {
  it('follows every state change, per device and for handshakes', () => {
    const t = new StreamTable();
    const a = add(t, 'a', 'pi-1');
    const b = add(t, 'b', 'pi-1');
    const c = add(t, 'c', 'pi-2');
    expect([t.liveCount(), t.deviceLiveCount('pi-1'), t.deviceLiveCount('pi-2'), t.handshakeCount()]).toEqual([3, 2, 1, 3]);
    t.setState(a, 'accepted');
    expect(t.handshakeCount()).toBe(3);
    t.setState(a, 'paired');
    expect([t.liveCount(), t.deviceLiveCount('pi-1'), t.handshakeCount()]).toEqual([3, 2, 2]);
    t.setState(a, 'ended');
    t.setState(b, 'ended'); // refused while requested
    expect([t.liveCount(), t.deviceLiveCount('pi-1'), t.deviceLiveCount('pi-2'), t.handshakeCount()]).toEqual([1, 0, 1, 1]);
    t.setState(a, 'paired'); // never back from ended
    expect([a.state, t.liveCount()]).toEqual(['ended', 1]);
    t.delete('a'); // the tombstone goes: the counts stay
    t.delete('a');
    expect([t.liveCount(), t.deviceLiveCount('pi-1')]).toEqual([1, 0]);
    t.delete('c'); // a live stream dropped (hub stop)
    expect([t.liveCount(), t.deviceLiveCount('pi-2'), t.handshakeCount()]).toEqual([0, 0, 0]);
    expect(t.all().map((s) => s.id)).toEqual(['b']);
    expect(c.state).toBe('requested');
  });
});
