// The `switchboard` package: WebRTC signaling for Node.js. `Server` (with the
// attach mode for an existing http server) and `Client`, over the Rust core.
export { Server } from './server';
export type { AuthHook, AuthOptions, AuthRequest, HttpReply, Identity, ServerOptions } from './server';
export { Attachment } from './attach';
export type { AttachOptions, HttpServer } from './attach';
export { Client } from './client';
export type { ClientOptions } from './client';
export {
  SwitchboardError,
  PROTOCOL_ERROR_CODES,
  BINDING_ERROR_CODES,
} from './errors';
export type { ErrorCode, ProtocolErrorCode, BindingErrorCode } from './errors';
export { SUBPROTOCOL } from './constants';
export * from './events';

import native = require('./native');

/** The package's (and native addon's) version. */
export const version: string = native.version();
