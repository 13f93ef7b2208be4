/** The devstreams service SDK: open TCP streams to devices by id, query the hub. */
export { DevstreamsClient, type DevstreamsClientOptions, type OpenStreamOptions } from './client.js';
export { HubRefusalError, HubRequestError } from './errors.js';
export { Forwarder, type ForwarderOptions } from './forward.js';
export {
  DevstreamsError,
  StreamClosedError,
  WsDuplex,
  bridge,
  type DeviceInfo,
  type ErrorCode,
  type StreamRecord,
} from '../protocol/index.js';
