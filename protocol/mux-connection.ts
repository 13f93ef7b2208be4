import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { WebSocket } from 'ws';
import { DevstreamsError, ERRORS, type ErrorCode } from './errors.js';
import { MuxChannel, type ChannelLink } from './mux-channel.js';
import { joined, messageBytes } from './message-socket.js';
import { MUX, MUX_SUBPROTOCOL_WINDOWS, decodeDataParts, decodeMuxFrame, encodeAttach, encodeClose, encodeOpen } from './mux-frames.js';
import { WindowTuner } from './mux-window.js';
import { noReadAhead } from './read-ahead.js';
import { errorCodeOfClose } from './ws-duplex.js';
import { receiveAsViews, writeFrameInPlace, writeFrameParts } from './ws-zero-copy.js';

/** Ids a client may use on one connection before it must open another (ids are never reused). */
const MAX_CHANNEL_ID = 0xffff_ffff;
/**
 * A frame up to this size without room for its WebSocket header is copied in behind the header and
 * written as one buffer: a copy Node's TLS socket would make anyway, joining two buffers.
 */
const SMALL_FRAME_BYTES = 1024;

export interface MuxAttachRequest {
  streamId: string;
  token: string;
}

export interface MuxOpenRequest {
  device: string;
  service: string;
  timeoutMs?: number;
}

export interface MuxRequestOptions {
  /** How long the hub may take to answer (an OPEN waits for the device). */
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface MuxConnectionOptions {
  /** The open WebSocket the channels share. */
  ws: WebSocket;
  /** 'client' attaches channels (the agent); 'server' is asked to accept them (the relay). */
  role: 'client' | 'server';
  /** Server: an ATTACH arrived; call channel.accept() or channel.refuse() (now or later). */
  onAttach?: (channel: MuxChannel, request: MuxAttachRequest) => void;
  /** Server: an OPEN arrived with this (unchecked) body; call channel.accept(streamId) or channel.refuse(). */
  onOpen?: (channel: MuxChannel, body: unknown) => void;
  /** Server: channels open or being attached at once; more are refused with LIMIT_EXCEEDED. */
  maxChannels?: number;
  /** Client: closes the connection (1000) after this long with no channel; absent: never. */
  idleCloseMs?: number;
  /** The peer takes CREDIT as a window update; absent: as the WebSocket's subprotocol says (devstreams.v1.mux2). */
  windowUpdates?: boolean;
  /** The window tuner's clock, in ms (tests); absent: performance.now. */
  clock?: () => number;
}

/**
 * One WebSocket carrying many stream channels (protocol/mux-frames.ts). It decodes each message,
 * hands it to its channel, and ends every channel when the WebSocket closes. A malformed message
 * closes the connection with BAD_REQUEST, and its channels with it; a message for an unknown or
 * ended channel is dropped (it crossed that channel's close).
 */
export class MuxConnection extends EventEmitter implements ChannelLink {
  private readonly ws: WebSocket;
  private readonly role: 'client' | 'server';
  private readonly onAttach: MuxConnectionOptions['onAttach'];
  private readonly onOpen: MuxConnectionOptions['onOpen'];
  private readonly maxChannels: number;
  private readonly channels = new Map<number, MuxChannel>();
  private readonly idleCloseMs: number | undefined;
  private idleTimer: NodeJS.Timeout | null = null;
  private nextId = 1;
  private closed = false;
  readonly windowUpdates: boolean;
  private readonly tuner: WindowTuner | null;

  constructor(opts: MuxConnectionOptions) {
    super();
    this.ws = opts.ws;
    this.role = opts.role;
    this.onAttach = opts.onAttach;
    this.onOpen = opts.onOpen;
    this.maxChannels = opts.maxChannels ?? 4096;
    this.idleCloseMs = opts.idleCloseMs;
    this.windowUpdates = opts.windowUpdates ?? this.ws.protocol === MUX_SUBPROTOCOL_WINDOWS;
    this.tuner = this.windowUpdates ? new WindowTuner(this.ws, opts.clock) : null;
    receiveAsViews(this.ws); // a DATA frame that came in several reads arrives as views into them
    const socket = (this.ws as unknown as { _socket?: Readable })._socket;
    if (socket) noReadAhead(socket); // protocol/read-ahead.ts
    this.ws.on('message', (data: Buffer | Buffer[], isBinary: boolean) => this.onMessage(data, isBinary));
    this.ws.on('close', (code: number, reason: Buffer) => this.onClose(code, reason.toString()));
    this.ws.on('error', () => {}); // 'close' follows
  }

  /** Channels open or being attached. */
  get channelCount(): number {
    return this.channels.size;
  }

  /** False once the WebSocket is closing or closed, or has no channel ids left. */
  get usable(): boolean {
    return !this.closed && this.ws.readyState === this.ws.OPEN && this.nextId < MAX_CHANNEL_ID;
  }

  /**
   * Client (agent): attaches a channel to a stream with its device token. Resolves with the
   * channel, paused (its first messages may arrive right behind the ACCEPT; resume it once
   * something listens), or rejects with the relay's refusal as a DevstreamsError.
   */
  async attach(request: MuxAttachRequest, opts: MuxRequestOptions): Promise<MuxChannel> {
    return (await this.request((id) => encodeAttach(id, request.streamId, request.token), opts)).channel;
  }

  /**
   * Client (SDK): opens a stream and joins it as its service side. Resolves with the channel
   * (paused, as attach's) and the stream id, or rejects with the refusal (the hub's or the
   * device's) as a DevstreamsError.
   */
  open(request: MuxOpenRequest, opts: MuxRequestOptions): Promise<{ channel: MuxChannel; streamId: string }> {
    return this.request((id) => encodeOpen(id, request), opts);
  }

  private request(frame: (id: number) => Buffer, opts: MuxRequestOptions): Promise<{ channel: MuxChannel; streamId: string }> {
    return new Promise((resolve, reject) => {
      if (!this.usable) return reject(new DevstreamsError('PEER_GONE', 'multiplexed connection is closed'));
      const channel = new MuxChannel(this, this.nextId++);
      channel.pause();
      this.channels.set(channel.id, channel);
      this.stopIdleTimer();
      const done = (err: Error | null, streamId = ''): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        channel.off('close', onClose);
        if (err) reject(err);
        else resolve({ channel, streamId });
      };
      const onClose = (code: number, reason: Buffer): void => {
        const c: ErrorCode = errorCodeOfClose(code);
        done(new DevstreamsError(c, reason.toString() || `relay closed the stream with ${code}`));
      };
      const onAbort = (): void => {
        channel.terminate();
        done(new DevstreamsError('SHUTTING_DOWN', 'aborted'));
      };
      const timer = setTimeout(() => {
        channel.terminate();
        done(new DevstreamsError('DEVICE_TIMEOUT', 'the hub did not answer in time'));
      }, opts.timeoutMs);
      channel.on('close', onClose);
      channel.once('accepted', (streamId: string) => done(null, streamId));
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.write(frame(channel.id));
    });
  }

  write(frame: Buffer, cb?: (err?: Error) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      if (cb) process.nextTick(cb, new DevstreamsError('PEER_GONE', 'multiplexed connection is closed'));
      return;
    }
    // One buffer to the socket where possible (protocol/ws-zero-copy.ts): the frame's WebSocket
    // header written in the room in front of it (bytes read at the edges), or a small frame copied
    // in behind its header (credits, control frames, a forwarded small payload).
    if (writeFrameInPlace(this.ws, frame, cb)) return;
    if (frame.length <= SMALL_FRAME_BYTES && writeFrameParts(this.ws, frame, [], cb)) return;
    this.ws.send(frame, { binary: true }, cb);
  }

  writeParts(head: Buffer, parts: Buffer[], cb?: (err?: Error) => void): void {
    if (!writeFrameParts(this.ws, head, parts, cb)) this.write(Buffer.concat([head, ...parts]), cb);
  }

  release(id: number): void {
    const channel = this.channels.get(id);
    if (channel) this.tuner?.released(channel);
    this.channels.delete(id);
    if (this.channels.size > 0) return;
    if (this.idleCloseMs !== undefined && !this.closed) {
      this.stopIdleTimer();
      this.idleTimer = setTimeout(() => this.close(1000, 'idle'), this.idleCloseMs).unref();
    }
    this.emit('idle');
  }

  private stopIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  /** Server: refuses every ATTACH or OPEN not answered yet (the hub is stopping). */
  refusePending(code: number, reason: string): void {
    for (const channel of [...this.channels.values()]) if (channel.readyState === channel.CONNECTING) channel.refuse(code, reason);
  }

  /** Closes the WebSocket; its channels end as if it had been lost (1006). */
  close(code = 1000, reason = ''): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }

  private onMessage(data: Buffer | Buffer[], isBinary: boolean): void {
    if (this.closed) return;
    if (!isBinary) return this.protocolError('text message on a multiplexed connection');
    if (Array.isArray(data) && data.length > 1) {
      const d = decodeDataParts(data);
      if (typeof d === 'string') return this.protocolError(d);
      if (d) return this.receiveData(d.id, d.data);
    }
    const f = decodeMuxFrame(joined(data));
    if (typeof f === 'string') return this.protocolError(f);
    if (f.type === MUX.ATTACH || f.type === MUX.OPEN) {
      if (this.role !== 'server') return this.protocolError('a request sent to a client');
      return this.requested(f.id, f.type === MUX.ATTACH ? { kind: 'attach', streamId: f.streamId, token: f.token } : { kind: 'open', body: f.body });
    }
    const channel = this.channels.get(f.id);
    if (!channel) return;
    switch (f.type) {
      case MUX.ACCEPT:
        if (this.role !== 'client') return this.protocolError('ACCEPT sent to the relay');
        if (channel.readyState === channel.CONNECTING) {
          channel.opened();
          channel.emit('accepted', f.streamId);
        }
        return;
      case MUX.DATA:
        return this.receiveData(f.id, f.data);
      case MUX.TEXT:
        return channel.receive('text', f.data);
      case MUX.CREDIT:
        return channel.credit(f.bytes);
      case MUX.CLOSE:
        return channel.peerClosed(f.code, f.reason);
    }
  }

  private receiveData(id: number, data: Buffer | Buffer[]): void {
    const channel = this.channels.get(id);
    if (!channel) return;
    channel.receive('data', data);
    this.tuner?.received(channel, messageBytes(data));
  }

  private requested(id: number, request: { kind: 'attach'; streamId: string; token: string } | { kind: 'open'; body: unknown }): void {
    if (this.channels.has(id)) return this.protocolError(`ATTACH for channel ${id}, which is in use`);
    if (this.channels.size >= this.maxChannels) {
      this.write(encodeClose(id, ERRORS.LIMIT_EXCEEDED.ws, `at most ${this.maxChannels} streams on one connection`));
      return;
    }
    const channel = new MuxChannel(this, id);
    this.channels.set(id, channel);
    if (request.kind === 'attach') {
      if (!this.onAttach) return channel.refuse(ERRORS.NOT_FOUND.ws, 'this connection attaches no streams');
      this.onAttach(channel, { streamId: request.streamId, token: request.token });
    } else {
      if (!this.onOpen) return channel.refuse(ERRORS.NOT_FOUND.ws, 'this connection opens no streams');
      this.onOpen(channel, request.body);
    }
  }

  private protocolError(reason: string): void {
    this.endChannels(ERRORS.BAD_REQUEST.ws, reason);
    this.close(ERRORS.BAD_REQUEST.ws, reason.slice(0, 120));
  }

  private onClose(code: number, reason: string): void {
    this.stopIdleTimer();
    this.endChannels(1006, '');
    this.emit('close', code, reason);
  }

  private endChannels(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const channel of [...this.channels.values()]) channel.lost(code, reason);
    this.channels.clear();
  }
}
