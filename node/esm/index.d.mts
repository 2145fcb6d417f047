// Types of the ES module entry: the same as the CommonJS build's.
export * from '../dist/index.js';
import * as cjs from '../dist/index.js';
export default cjs;
