// The generated napi-rs loader and its generated types (`native/index.js`,
// `native/index.d.ts`, written by `napi build`), re-exported for the TypeScript layer.
import native = require('../native/index.js');

export = native;
