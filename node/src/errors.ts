// Errors of the package: one class, `SwitchboardError`, whose `code` is the
// protocol error code or one of the binding codes below; and the mapping from
// the native addon's "[code] message" errors.

/** Error codes of the protocol (PROTOCOL.md, "Errors and close codes"). */
export const PROTOCOL_ERROR_CODES = [
  'invalid-json',
  'invalid-message',
  'unknown-type',
  'unauthorized',
  'forbidden',
  'not-in-room',
  'peer-not-found',
  'room-full',
  'user-id-taken',
  'rate-limited',
  'message-too-big',
  'resume-failed',
  'internal',
] as const;

/**
 * Codes of failures that are not protocol errors:
 * - `config`: an invalid option (before any I/O);
 * - `io`: binding a port or connecting failed;
 * - `websocket`: the WebSocket handshake was refused or failed;
 * - `closed`: the client or server is closed (or closed while the call waited);
 * - `queue-full`: the client's outbox is full, nothing was queued;
 * - `timeout`: an operation did not complete in time;
 * - `invalid-argument`: a call got an argument of the wrong type.
 */
export const BINDING_ERROR_CODES = [
  'config',
  'io',
  'websocket',
  'closed',
  'queue-full',
  'timeout',
  'invalid-argument',
] as const;

export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number];
export type BindingErrorCode = (typeof BINDING_ERROR_CODES)[number];
export type ErrorCode = ProtocolErrorCode | BindingErrorCode;

/** Every error this package throws or rejects with: an `Error` with `code`. */
export class SwitchboardError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SwitchboardError';
    this.code = code;
  }
}

const CODED = /^\[([a-z-]+)\] ([\s\S]*)$/;
const KNOWN = new Set<string>([...PROTOCOL_ERROR_CODES, ...BINDING_ERROR_CODES]);

/** Turns whatever the native addon threw into a `SwitchboardError`. */
export function fromNative(err: unknown): SwitchboardError {
  if (err instanceof SwitchboardError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const m = CODED.exec(message);
  if (m && KNOWN.has(m[1])) {
    // The core prefixes protocol errors with their code again: "code: text".
    const text = m[2].startsWith(`${m[1]}: `) ? m[2].slice(m[1].length + 2) : m[2];
    return new SwitchboardError(m[1] as ErrorCode, text);
  }
  // napi's own argument conversion errors (a number where a string belongs, ...).
  const napiCode = (err as { code?: unknown } | null)?.code;
  if (napiCode === 'InvalidArg' || napiCode === 'StringExpected' || napiCode === 'NumberExpected' || napiCode === 'ObjectExpected') {
    return new SwitchboardError('invalid-argument', message, { cause: err });
  }
  return new SwitchboardError('internal', message, { cause: err });
}

/** Runs a native call, mapping its errors. */
export function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromNative(e);
  }
}

/** Awaits a native promise, mapping its rejection. */
export async function settle<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw fromNative(e);
  }
}

export function invalidArgument(message: string): SwitchboardError {
  return new SwitchboardError('invalid-argument', message);
}

export function configError(message: string): SwitchboardError {
  return new SwitchboardError('config', message);
}

/**
 * Reports an exception of application code (a listener, the auth hook, the
 * token provider) without letting it reach the core or crash the process: a
 * process warning named `SwitchboardListenerError` (`process.on('warning')`).
 */
export function reportListenerError(where: string, err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  const warning = new Error(`${where} threw: ${e.message}`, { cause: e });
  warning.name = 'SwitchboardListenerError';
  process.emitWarning(warning);
}
