// Protocol constants shared by the TypeScript layer.

/** The WebSocket subprotocol of the JSON protocol. */
export const SUBPROTOCOL = 'webrtc-signaling';
