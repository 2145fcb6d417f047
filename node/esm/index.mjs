// ES module entry of `switchboard`: the CommonJS build re-exported, so both
// `import` and `require` share one set of classes (no dual-package hazard).
import cjs from '../dist/index.js';

export const {
  Server,
  Attachment,
  Client,
  SwitchboardError,
  PROTOCOL_ERROR_CODES,
  BINDING_ERROR_CODES,
  SUBPROTOCOL,
  SERVER_EVENT_NAMES,
  version,
} = cjs;
export default cjs;
