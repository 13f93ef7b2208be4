import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type * as z from '../protocol/zod.js';
import { PROTOCOL_HEADER, PROTOCOL_VERSION, describeIssues, onAbort } from '../protocol/index.js';
import { HubRefusalError, HubRequestError, invalidAnswer, refusalFromAnswer, unreachable } from './errors.js';

/** The largest hub answer read (a full stream list is about 0.5 MiB). */
export const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export interface HubEndpoint {
  /** Base URL of the hub, https: only. */
  readonly base: URL;
  readonly token: string;
  readonly agent: https.Agent;
  /** Where the hub's CA is set, for TLS trust failures (errors.ts unreachable). */
  readonly caSource?: string;
}

export interface JsonRequest<S extends z.ZodMiniType> {
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  schema: S;
  /** Whole-request deadline (connect, send, wait, read). */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

/** `path` (with an optional `?query`) under the hub's base URL, keeping a base path prefix (https://host/prefix). */
export function hubUrl(base: URL, path: string): URL {
  const url = new URL(base.href);
  const q = path.indexOf('?');
  url.pathname = base.pathname.replace(/\/+$/, '') + (q < 0 ? path : path.slice(0, q));
  url.search = q < 0 ? '' : path.slice(q);
  url.hash = '';
  return url;
}

/**
 * One JSON call to the hub's REST API. Resolves with the schema-checked answer of a 2xx; rejects
 * with HubRefusalError for a non-2xx (code from the error body) and HubRequestError when the hub
 * cannot be reached or answers garbage.
 */
export function requestJson<S extends z.ZodMiniType>(hub: HubEndpoint, r: JsonRequest<S>): Promise<z.output<S>> {
  return attempt(hub, r, true);
}

function attempt<S extends z.ZodMiniType>(hub: HubEndpoint, r: JsonRequest<S>, mayRetry: boolean): Promise<z.output<S>> {
  const url = hubUrl(hub.base, r.path);
  const what = `${r.method} ${url.pathname}`;
  const payload = r.body === undefined ? undefined : Buffer.from(JSON.stringify(r.body));
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err: Error | null, value?: z.output<S>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unlisten();
      if (err) reject(err);
      else resolve(value as z.output<S>);
    };
    const req = https.request(url, {
      method: r.method,
      agent: hub.agent,
      headers: {
        accept: 'application/json',
        authorization: `Bearer ${hub.token}`,
        ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
      },
    });
    const timer = setTimeout(() => {
      const err = new HubRequestError(`${what}: no answer from hub ${hub.base.origin} within ${r.timeoutMs} ms`);
      settle(err);
      req.destroy(err);
    }, r.timeoutMs);
    req.on('error', (err) => {
      if (mayRetry && !settled && req.reusedSocket && (err as NodeJS.ErrnoException).code === 'ECONNRESET') {
        // A kept-alive connection the hub closed (idle timeout) just as this request went out on it:
        // the hub never read the request, so sending it again on a new connection is safe. Once.
        settled = true;
        clearTimeout(timer);
        unlisten();
        attempt(hub, r, false).then(resolve, reject);
        return;
      }
      settle(err instanceof HubRequestError ? err : unreachable(hub.base.origin, err, hub.caSource));
    });
    const unlisten = onAbort(r.signal, (reason) => {
      settle(reason);
      req.destroy();
    });
    req.on('response', (res) => {
      readBody(res, MAX_ANSWER_BYTES).then(
        (body) => {
          try {
            settle(null, parseAnswer(what, res, body, r.schema));
          } catch (err) {
            settle(err as Error);
          }
        },
        (err: Error) => settle(err instanceof HubRequestError ? err : unreachable(hub.base.origin, err, hub.caSource)),
      );
    });
    req.end(payload);
  });
}

function parseAnswer<S extends z.ZodMiniType>(what: string, res: IncomingMessage, body: Buffer, schema: S): z.output<S> {
  const status = res.statusCode ?? 0;
  const protocol = res.headers[PROTOCOL_HEADER];
  if (typeof protocol === 'string' && protocol !== String(PROTOCOL_VERSION)) {
    throw new HubRefusalError(
      'VERSION_MISMATCH',
      `${what}: hub speaks protocol ${protocol.slice(0, 16)}, this client speaks ${PROTOCOL_VERSION}`,
      status,
    );
  }
  if (status < 200 || status > 299) throw refusalFromAnswer(what, status, res.headers['content-type'], body);
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalidAnswer(what, status, `not JSON (${res.headers['content-type'] ?? 'no content type'}, ${body.length} bytes)`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw invalidAnswer(what, status, describeIssues(parsed.error));
  return parsed.data;
}

/** Reads a whole HTTP body, refusing more than `limit` bytes. */
export function readBody(res: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        res.destroy();
        reject(new HubRequestError(`hub answer is larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', reject);
    res.on('aborted', () => reject(new HubRequestError('hub closed the connection mid-answer')));
  });
}
