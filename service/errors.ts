import { apiErrorOf, DevstreamsError, isTlsTrustError, withoutNodeAdvice, type ErrorCode } from '../protocol/index.js';

/**
 * The hub (or its relay) answered with an error: `code` and `status` come from its error body (or,
 * if the body was not a devstreams error, are derived from the HTTP status). For a stream request
 * this is the device's or the hub's refusal; programs compare `code`, people read `reason`.
 */
export class HubRefusalError extends DevstreamsError {
  constructor(code: ErrorCode, reason: string, status: number) {
    super(code, reason, status);
    this.name = 'HubRefusalError';
  }
}

/**
 * A failure on this side of the hub: it could not be reached, TLS failed, or its answer was not
 * valid. Code INTERNAL, status 0 (there is no hub status to report).
 */
export class HubRequestError extends DevstreamsError {
  constructor(reason: string, cause?: unknown) {
    super('INTERNAL', reason, 0);
    this.name = 'HubRequestError';
    if (cause !== undefined) Object.defineProperty(this, 'cause', { value: cause, enumerable: false });
  }
}

/**
 * The error code a bare HTTP status stands for, when an answer carries no devstreams error body
 * (a proxy in the way, a hub of another kind). A 5xx without a body is INTERNAL: nothing says the
 * device is involved.
 */
const CODE_OF_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'SERVICE_DENIED',
  404: 'NOT_FOUND',
  409: 'TOKEN_USED',
  410: 'STREAM_EXPIRED',
  413: 'PAYLOAD_TOO_LARGE',
  426: 'VERSION_MISMATCH',
  429: 'LIMIT_EXCEEDED',
};

export function codeOfStatus(status: number): ErrorCode {
  return CODE_OF_STATUS[status] ?? (status >= 400 && status < 500 ? 'BAD_REQUEST' : 'INTERNAL');
}

/** Turns a non-2xx answer (status + raw body) into the error it stands for. */
export function refusalFromAnswer(what: string, status: number, contentType: string | undefined, body: Buffer): HubRefusalError {
  const error = apiErrorOf(body);
  if (error) return new HubRefusalError(error.code, oneLine(error.reason), status);
  return new HubRefusalError(
    codeOfStatus(status),
    `${what}: hub answered HTTP ${status} without a devstreams error body (${describeBody(contentType, body)})`,
    status,
  );
}

/** A 2xx answer whose body does not match the expected schema. */
export function invalidAnswer(what: string, status: number, detail: string): HubRequestError {
  return new HubRequestError(`${what}: hub answered HTTP ${status} with an invalid body: ${oneLine(detail)}`);
}

/** How a TLS trust failure names the setting that holds the hub's CA, unless told otherwise (the SDK's). */
export const SDK_CA_SOURCE = "the client's `ca` option";

/**
 * A transport failure (connection refused, DNS, TLS, timeout) while talking to `target`. A TLS
 * trust failure points at `caSource`, the setting where the hub's CA belongs: the SDK's `ca` option,
 * or the CLI's flag and variable (DevstreamsClientOptions.caSource).
 */
export function unreachable(target: string, err: unknown, caSource: string = SDK_CA_SOURCE): HubRequestError {
  const e = err as NodeJS.ErrnoException;
  const message = withoutNodeAdvice(String(e?.message ?? err));
  const detail = e?.code && !message.includes(e.code) ? `${e.code} ${message}` : message;
  const hint = isTlsTrustError(e) ? ` (is ${caSource} the hub's CA?)` : '';
  return new HubRequestError(`cannot reach hub ${target}: ${oneLine(detail)}${hint}`, err);
}

function describeBody(contentType: string | undefined, body: Buffer): string {
  const text = oneLine(body.subarray(0, 200).toString('utf8')).slice(0, 80);
  const type = contentType ? contentType.split(';')[0] : 'no content type';
  return body.length === 0 ? `${type}, empty` : `${type}: "${text}${body.length > 80 ? '...' : ''}"`;
}

/** Text from the network, made safe for one terminal line: control characters become spaces. */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ').trim();
}

/** The one stderr line for a stream the hub, relay or device refused (DESIGN: print status and reason). */
export function refusedLine(device: string, service: string, err: HubRefusalError): string {
  return `devstreams: ${oneLine(device)}/${oneLine(service)} refused: ${err.status} ${err.code}: ${oneLine(err.reason)}`;
}

/** The one stderr line for a stream that was open and then ended abnormally. */
export function streamFailedLine(device: string, service: string, err: Error, detail = ''): string {
  const code = err instanceof DevstreamsError ? ` (${err.code})` : '';
  return `devstreams: ${oneLine(device)}/${oneLine(service)}: stream failed${detail}: ${oneLine(err.message)}${code}`;
}
