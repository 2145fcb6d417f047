// The Switchboard browser client. Bundles @msgpack/msgpack (ISC license, https://github.com/msgpack/msgpack-javascript).

// node_modules/@msgpack/msgpack/dist.esm/utils/utf8.mjs
function utf8Count(str) {
  const strLength = str.length;
  let byteLength = 0;
  let pos = 0;
  while (pos < strLength) {
    let value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      byteLength++;
      continue;
    } else if ((value & 4294965248) === 0) {
      byteLength += 2;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          const extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        byteLength += 3;
      } else {
        byteLength += 4;
      }
    }
  }
  return byteLength;
}
function utf8EncodeJs(str, output, outputOffset) {
  const strLength = str.length;
  let offset = outputOffset;
  let pos = 0;
  while (pos < strLength) {
    let value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      output[offset++] = value;
      continue;
    } else if ((value & 4294965248) === 0) {
      output[offset++] = value >> 6 & 31 | 192;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          const extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        output[offset++] = value >> 12 & 15 | 224;
        output[offset++] = value >> 6 & 63 | 128;
      } else {
        output[offset++] = value >> 18 & 7 | 240;
        output[offset++] = value >> 12 & 63 | 128;
        output[offset++] = value >> 6 & 63 | 128;
      }
    }
    output[offset++] = value & 63 | 128;
  }
}
var sharedTextEncoder = new TextEncoder();
var TEXT_ENCODER_THRESHOLD = 50;
function utf8EncodeTE(str, output, outputOffset) {
  sharedTextEncoder.encodeInto(str, output.subarray(outputOffset));
}
function utf8Encode(str, output, outputOffset) {
  if (str.length > TEXT_ENCODER_THRESHOLD) {
    utf8EncodeTE(str, output, outputOffset);
  } else {
    utf8EncodeJs(str, output, outputOffset);
  }
}
var CHUNK_SIZE = 4096;
function utf8DecodeJs(bytes, inputOffset, byteLength) {
  let offset = inputOffset;
  const end = offset + byteLength;
  const units = [];
  let result = "";
  while (offset < end) {
    const byte1 = bytes[offset++];
    if ((byte1 & 128) === 0) {
      units.push(byte1);
    } else if ((byte1 & 224) === 192) {
      const byte2 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 6 | byte2);
    } else if ((byte1 & 240) === 224) {
      const byte2 = bytes[offset++] & 63;
      const byte3 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 12 | byte2 << 6 | byte3);
    } else if ((byte1 & 248) === 240) {
      const byte2 = bytes[offset++] & 63;
      const byte3 = bytes[offset++] & 63;
      const byte4 = bytes[offset++] & 63;
      let unit = (byte1 & 7) << 18 | byte2 << 12 | byte3 << 6 | byte4;
      if (unit > 65535) {
        unit -= 65536;
        units.push(unit >>> 10 & 1023 | 55296);
        unit = 56320 | unit & 1023;
      }
      units.push(unit);
    } else {
      units.push(byte1);
    }
    if (units.length >= CHUNK_SIZE) {
      result += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  if (units.length > 0) {
    result += String.fromCharCode(...units);
  }
  return result;
}
var sharedTextDecoder = new TextDecoder();
var TEXT_DECODER_THRESHOLD = 200;
function utf8DecodeTD(bytes, inputOffset, byteLength) {
  const stringBytes = bytes.subarray(inputOffset, inputOffset + byteLength);
  return sharedTextDecoder.decode(stringBytes);
}
function utf8Decode(bytes, inputOffset, byteLength) {
  if (byteLength > TEXT_DECODER_THRESHOLD) {
    return utf8DecodeTD(bytes, inputOffset, byteLength);
  } else {
    return utf8DecodeJs(bytes, inputOffset, byteLength);
  }
}

// node_modules/@msgpack/msgpack/dist.esm/ExtData.mjs
var ExtData = class {
  type;
  data;
  constructor(type, data) {
    this.type = type;
    this.data = data;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/DecodeError.mjs
var DecodeError = class _DecodeError extends Error {
  constructor(message) {
    super(message);
    const proto = Object.create(_DecodeError.prototype);
    Object.setPrototypeOf(this, proto);
    Object.defineProperty(this, "name", {
      configurable: true,
      enumerable: false,
      value: _DecodeError.name
    });
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/int.mjs
var UINT32_MAX = 4294967295;
function setUint64(view, offset, value) {
  const high = value / 4294967296;
  const low = value;
  view.setUint32(offset, high);
  view.setUint32(offset + 4, low);
}
function setInt64(view, offset, value) {
  const high = Math.floor(value / 4294967296);
  const low = value;
  view.setUint32(offset, high);
  view.setUint32(offset + 4, low);
}
function getInt64(view, offset) {
  const high = view.getInt32(offset);
  const low = view.getUint32(offset + 4);
  return high * 4294967296 + low;
}
function getUint64(view, offset) {
  const high = view.getUint32(offset);
  const low = view.getUint32(offset + 4);
  return high * 4294967296 + low;
}

// node_modules/@msgpack/msgpack/dist.esm/timestamp.mjs
var EXT_TIMESTAMP = -1;
var TIMESTAMP32_MAX_SEC = 4294967296 - 1;
var TIMESTAMP64_MAX_SEC = 17179869184 - 1;
function encodeTimeSpecToTimestamp({ sec, nsec }) {
  if (sec >= 0 && nsec >= 0 && sec <= TIMESTAMP64_MAX_SEC) {
    if (nsec === 0 && sec <= TIMESTAMP32_MAX_SEC) {
      const rv = new Uint8Array(4);
      const view = new DataView(rv.buffer);
      view.setUint32(0, sec);
      return rv;
    } else {
      const secHigh = sec / 4294967296;
      const secLow = sec & 4294967295;
      const rv = new Uint8Array(8);
      const view = new DataView(rv.buffer);
      view.setUint32(0, nsec << 2 | secHigh & 3);
      view.setUint32(4, secLow);
      return rv;
    }
  } else {
    const rv = new Uint8Array(12);
    const view = new DataView(rv.buffer);
    view.setUint32(0, nsec);
    setInt64(view, 4, sec);
    return rv;
  }
}
function encodeDateToTimeSpec(date) {
  const msec = date.getTime();
  const sec = Math.floor(msec / 1e3);
  const nsec = (msec - sec * 1e3) * 1e6;
  const nsecInSec = Math.floor(nsec / 1e9);
  return {
    sec: sec + nsecInSec,
    nsec: nsec - nsecInSec * 1e9
  };
}
function encodeTimestampExtension(object) {
  if (object instanceof Date) {
    const timeSpec = encodeDateToTimeSpec(object);
    return encodeTimeSpecToTimestamp(timeSpec);
  } else {
    return null;
  }
}
function decodeTimestampToTimeSpec(data) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (data.byteLength) {
    case 4: {
      const sec = view.getUint32(0);
      const nsec = 0;
      return { sec, nsec };
    }
    case 8: {
      const nsec30AndSecHigh2 = view.getUint32(0);
      const secLow32 = view.getUint32(4);
      const sec = (nsec30AndSecHigh2 & 3) * 4294967296 + secLow32;
      const nsec = nsec30AndSecHigh2 >>> 2;
      return { sec, nsec };
    }
    case 12: {
      const sec = getInt64(view, 4);
      const nsec = view.getUint32(0);
      return { sec, nsec };
    }
    default:
      throw new DecodeError(`Unrecognized data size for timestamp (expected 4, 8, or 12): ${data.length}`);
  }
}
function decodeTimestampExtension(data) {
  const timeSpec = decodeTimestampToTimeSpec(data);
  return new Date(timeSpec.sec * 1e3 + timeSpec.nsec / 1e6);
}
var timestampExtension = {
  type: EXT_TIMESTAMP,
  encode: encodeTimestampExtension,
  decode: decodeTimestampExtension
};

// node_modules/@msgpack/msgpack/dist.esm/ExtensionCodec.mjs
var ExtensionCodec = class _ExtensionCodec {
  static defaultCodec = new _ExtensionCodec();
  // ensures ExtensionCodecType<X> matches ExtensionCodec<X>
  // this will make type errors a lot more clear
  // eslint-disable-next-line @typescript-eslint/naming-convention
  __brand;
  // built-in extensions
  builtInEncoders = [];
  builtInDecoders = [];
  // custom extensions
  encoders = [];
  decoders = [];
  constructor() {
    this.register(timestampExtension);
  }
  register({ type, encode: encode2, decode: decode2 }) {
    if (type >= 0) {
      this.encoders[type] = encode2;
      this.decoders[type] = decode2;
    } else {
      const index = -1 - type;
      this.builtInEncoders[index] = encode2;
      this.builtInDecoders[index] = decode2;
    }
  }
  tryToEncode(object, context) {
    for (let i = 0; i < this.builtInEncoders.length; i++) {
      const encodeExt = this.builtInEncoders[i];
      if (encodeExt != null) {
        const data = encodeExt(object, context);
        if (data != null) {
          const type = -1 - i;
          return new ExtData(type, data);
        }
      }
    }
    for (let i = 0; i < this.encoders.length; i++) {
      const encodeExt = this.encoders[i];
      if (encodeExt != null) {
        const data = encodeExt(object, context);
        if (data != null) {
          const type = i;
          return new ExtData(type, data);
        }
      }
    }
    if (object instanceof ExtData) {
      return object;
    }
    return null;
  }
  decode(data, type, context) {
    const decodeExt = type < 0 ? this.builtInDecoders[-1 - type] : this.decoders[type];
    if (decodeExt) {
      return decodeExt(data, type, context);
    } else {
      return new ExtData(type, data);
    }
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/typedArrays.mjs
function isArrayBufferLike(buffer) {
  return buffer instanceof ArrayBuffer || typeof SharedArrayBuffer !== "undefined" && buffer instanceof SharedArrayBuffer;
}
function ensureUint8Array(buffer) {
  if (buffer instanceof Uint8Array) {
    return buffer;
  } else if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } else if (isArrayBufferLike(buffer)) {
    return new Uint8Array(buffer);
  } else {
    return Uint8Array.from(buffer);
  }
}

// node_modules/@msgpack/msgpack/dist.esm/Encoder.mjs
var DEFAULT_MAX_DEPTH = 100;
var DEFAULT_INITIAL_BUFFER_SIZE = 2048;
var Encoder = class _Encoder {
  extensionCodec;
  context;
  useBigInt64;
  maxDepth;
  initialBufferSize;
  sortKeys;
  forceFloat32;
  ignoreUndefined;
  forceIntegerToFloat;
  pos;
  view;
  bytes;
  entered = false;
  constructor(options) {
    this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
    this.context = options?.context;
    this.useBigInt64 = options?.useBigInt64 ?? false;
    this.maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.initialBufferSize = options?.initialBufferSize ?? DEFAULT_INITIAL_BUFFER_SIZE;
    this.sortKeys = options?.sortKeys ?? false;
    this.forceFloat32 = options?.forceFloat32 ?? false;
    this.ignoreUndefined = options?.ignoreUndefined ?? false;
    this.forceIntegerToFloat = options?.forceIntegerToFloat ?? false;
    this.pos = 0;
    this.view = new DataView(new ArrayBuffer(this.initialBufferSize));
    this.bytes = new Uint8Array(this.view.buffer);
  }
  clone() {
    return new _Encoder({
      extensionCodec: this.extensionCodec,
      context: this.context,
      useBigInt64: this.useBigInt64,
      maxDepth: this.maxDepth,
      initialBufferSize: this.initialBufferSize,
      sortKeys: this.sortKeys,
      forceFloat32: this.forceFloat32,
      ignoreUndefined: this.ignoreUndefined,
      forceIntegerToFloat: this.forceIntegerToFloat
    });
  }
  reinitializeState() {
    this.pos = 0;
  }
  /**
   * This is almost equivalent to {@link Encoder#encode}, but it returns an reference of the encoder's internal buffer and thus much faster than {@link Encoder#encode}.
   *
   * @returns Encodes the object and returns a shared reference the encoder's internal buffer.
   */
  encodeSharedRef(object) {
    if (this.entered) {
      const instance = this.clone();
      return instance.encodeSharedRef(object);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.subarray(0, this.pos);
    } finally {
      this.entered = false;
    }
  }
  /**
   * @returns Encodes the object and returns a copy of the encoder's internal buffer.
   */
  encode(object) {
    if (this.entered) {
      const instance = this.clone();
      return instance.encode(object);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.slice(0, this.pos);
    } finally {
      this.entered = false;
    }
  }
  doEncode(object, depth) {
    if (depth > this.maxDepth) {
      throw new Error(`Too deep objects in depth ${depth}`);
    }
    if (object == null) {
      this.encodeNil();
    } else if (typeof object === "boolean") {
      this.encodeBoolean(object);
    } else if (typeof object === "number") {
      if (!this.forceIntegerToFloat) {
        this.encodeNumber(object);
      } else {
        this.encodeNumberAsFloat(object);
      }
    } else if (typeof object === "string") {
      this.encodeString(object);
    } else if (this.useBigInt64 && typeof object === "bigint") {
      this.encodeBigInt64(object);
    } else {
      this.encodeObject(object, depth);
    }
  }
  ensureBufferSizeToWrite(sizeToWrite) {
    const requiredSize = this.pos + sizeToWrite;
    if (this.view.byteLength < requiredSize) {
      this.resizeBuffer(requiredSize * 2);
    }
  }
  resizeBuffer(newSize) {
    const newBuffer = new ArrayBuffer(newSize);
    const newBytes = new Uint8Array(newBuffer);
    const newView = new DataView(newBuffer);
    newBytes.set(this.bytes);
    this.view = newView;
    this.bytes = newBytes;
  }
  encodeNil() {
    this.writeU8(192);
  }
  encodeBoolean(object) {
    if (object === false) {
      this.writeU8(194);
    } else {
      this.writeU8(195);
    }
  }
  encodeNumber(object) {
    if (!this.forceIntegerToFloat && Number.isSafeInteger(object)) {
      if (object >= 0) {
        if (object < 128) {
          this.writeU8(object);
        } else if (object < 256) {
          this.writeU8(204);
          this.writeU8(object);
        } else if (object < 65536) {
          this.writeU8(205);
          this.writeU16(object);
        } else if (object < 4294967296) {
          this.writeU8(206);
          this.writeU32(object);
        } else if (!this.useBigInt64) {
          this.writeU8(207);
          this.writeU64(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      } else {
        if (object >= -32) {
          this.writeU8(224 | object + 32);
        } else if (object >= -128) {
          this.writeU8(208);
          this.writeI8(object);
        } else if (object >= -32768) {
          this.writeU8(209);
          this.writeI16(object);
        } else if (object >= -2147483648) {
          this.writeU8(210);
          this.writeI32(object);
        } else if (!this.useBigInt64) {
          this.writeU8(211);
          this.writeI64(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      }
    } else {
      this.encodeNumberAsFloat(object);
    }
  }
  encodeNumberAsFloat(object) {
    if (this.forceFloat32) {
      this.writeU8(202);
      this.writeF32(object);
    } else {
      this.writeU8(203);
      this.writeF64(object);
    }
  }
  encodeBigInt64(object) {
    if (object >= BigInt(0)) {
      this.writeU8(207);
      this.writeBigUint64(object);
    } else {
      this.writeU8(211);
      this.writeBigInt64(object);
    }
  }
  writeStringHeader(byteLength) {
    if (byteLength < 32) {
      this.writeU8(160 + byteLength);
    } else if (byteLength < 256) {
      this.writeU8(217);
      this.writeU8(byteLength);
    } else if (byteLength < 65536) {
      this.writeU8(218);
      this.writeU16(byteLength);
    } else if (byteLength < 4294967296) {
      this.writeU8(219);
      this.writeU32(byteLength);
    } else {
      throw new Error(`Too long string: ${byteLength} bytes in UTF-8`);
    }
  }
  encodeString(object) {
    const maxHeaderSize = 1 + 4;
    const byteLength = utf8Count(object);
    this.ensureBufferSizeToWrite(maxHeaderSize + byteLength);
    this.writeStringHeader(byteLength);
    utf8Encode(object, this.bytes, this.pos);
    this.pos += byteLength;
  }
  encodeObject(object, depth) {
    const ext = this.extensionCodec.tryToEncode(object, this.context);
    if (ext != null) {
      this.encodeExtension(ext);
    } else if (Array.isArray(object)) {
      this.encodeArray(object, depth);
    } else if (ArrayBuffer.isView(object)) {
      this.encodeBinary(object);
    } else if (typeof object === "object") {
      this.encodeMap(object, depth);
    } else {
      throw new Error(`Unrecognized object: ${Object.prototype.toString.apply(object)}`);
    }
  }
  encodeBinary(object) {
    const size = object.byteLength;
    if (size < 256) {
      this.writeU8(196);
      this.writeU8(size);
    } else if (size < 65536) {
      this.writeU8(197);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(198);
      this.writeU32(size);
    } else {
      throw new Error(`Too large binary: ${size}`);
    }
    const bytes = ensureUint8Array(object);
    this.writeU8a(bytes);
  }
  encodeArray(object, depth) {
    const size = object.length;
    if (size < 16) {
      this.writeU8(144 + size);
    } else if (size < 65536) {
      this.writeU8(220);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(221);
      this.writeU32(size);
    } else {
      throw new Error(`Too large array: ${size}`);
    }
    for (const item of object) {
      this.doEncode(item, depth + 1);
    }
  }
  countWithoutUndefined(object, keys) {
    let count = 0;
    for (const key of keys) {
      if (object[key] !== void 0) {
        count++;
      }
    }
    return count;
  }
  encodeMap(object, depth) {
    const keys = Object.keys(object);
    if (this.sortKeys) {
      keys.sort();
    }
    const size = this.ignoreUndefined ? this.countWithoutUndefined(object, keys) : keys.length;
    if (size < 16) {
      this.writeU8(128 + size);
    } else if (size < 65536) {
      this.writeU8(222);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(223);
      this.writeU32(size);
    } else {
      throw new Error(`Too large map object: ${size}`);
    }
    for (const key of keys) {
      const value = object[key];
      if (!(this.ignoreUndefined && value === void 0)) {
        this.encodeString(key);
        this.doEncode(value, depth + 1);
      }
    }
  }
  encodeExtension(ext) {
    if (typeof ext.data === "function") {
      const data = ext.data(this.pos + 6);
      const size2 = data.length;
      if (size2 >= 4294967296) {
        throw new Error(`Too large extension object: ${size2}`);
      }
      this.writeU8(201);
      this.writeU32(size2);
      this.writeI8(ext.type);
      this.writeU8a(data);
      return;
    }
    const size = ext.data.length;
    if (size === 1) {
      this.writeU8(212);
    } else if (size === 2) {
      this.writeU8(213);
    } else if (size === 4) {
      this.writeU8(214);
    } else if (size === 8) {
      this.writeU8(215);
    } else if (size === 16) {
      this.writeU8(216);
    } else if (size < 256) {
      this.writeU8(199);
      this.writeU8(size);
    } else if (size < 65536) {
      this.writeU8(200);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(201);
      this.writeU32(size);
    } else {
      throw new Error(`Too large extension object: ${size}`);
    }
    this.writeI8(ext.type);
    this.writeU8a(ext.data);
  }
  writeU8(value) {
    this.ensureBufferSizeToWrite(1);
    this.view.setUint8(this.pos, value);
    this.pos++;
  }
  writeU8a(values) {
    const size = values.length;
    this.ensureBufferSizeToWrite(size);
    this.bytes.set(values, this.pos);
    this.pos += size;
  }
  writeI8(value) {
    this.ensureBufferSizeToWrite(1);
    this.view.setInt8(this.pos, value);
    this.pos++;
  }
  writeU16(value) {
    this.ensureBufferSizeToWrite(2);
    this.view.setUint16(this.pos, value);
    this.pos += 2;
  }
  writeI16(value) {
    this.ensureBufferSizeToWrite(2);
    this.view.setInt16(this.pos, value);
    this.pos += 2;
  }
  writeU32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setUint32(this.pos, value);
    this.pos += 4;
  }
  writeI32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setInt32(this.pos, value);
    this.pos += 4;
  }
  writeF32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setFloat32(this.pos, value);
    this.pos += 4;
  }
  writeF64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setFloat64(this.pos, value);
    this.pos += 8;
  }
  writeU64(value) {
    this.ensureBufferSizeToWrite(8);
    setUint64(this.view, this.pos, value);
    this.pos += 8;
  }
  writeI64(value) {
    this.ensureBufferSizeToWrite(8);
    setInt64(this.view, this.pos, value);
    this.pos += 8;
  }
  writeBigUint64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setBigUint64(this.pos, value);
    this.pos += 8;
  }
  writeBigInt64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setBigInt64(this.pos, value);
    this.pos += 8;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/encode.mjs
function encode(value, options) {
  const encoder = new Encoder(options);
  return encoder.encodeSharedRef(value);
}

// node_modules/@msgpack/msgpack/dist.esm/utils/prettyByte.mjs
function prettyByte(byte) {
  return `${byte < 0 ? "-" : ""}0x${Math.abs(byte).toString(16).padStart(2, "0")}`;
}

// node_modules/@msgpack/msgpack/dist.esm/CachedKeyDecoder.mjs
var DEFAULT_MAX_KEY_LENGTH = 16;
var DEFAULT_MAX_LENGTH_PER_KEY = 16;
var CachedKeyDecoder = class {
  hit = 0;
  miss = 0;
  caches;
  maxKeyLength;
  maxLengthPerKey;
  constructor(maxKeyLength = DEFAULT_MAX_KEY_LENGTH, maxLengthPerKey = DEFAULT_MAX_LENGTH_PER_KEY) {
    this.maxKeyLength = maxKeyLength;
    this.maxLengthPerKey = maxLengthPerKey;
    this.caches = [];
    for (let i = 0; i < this.maxKeyLength; i++) {
      this.caches.push([]);
    }
  }
  canBeCached(byteLength) {
    return byteLength > 0 && byteLength <= this.maxKeyLength;
  }
  find(bytes, inputOffset, byteLength) {
    const records = this.caches[byteLength - 1];
    FIND_CHUNK: for (const record of records) {
      const recordBytes = record.bytes;
      for (let j = 0; j < byteLength; j++) {
        if (recordBytes[j] !== bytes[inputOffset + j]) {
          continue FIND_CHUNK;
        }
      }
      return record.str;
    }
    return null;
  }
  store(bytes, value) {
    const records = this.caches[bytes.length - 1];
    const record = { bytes, str: value };
    if (records.length >= this.maxLengthPerKey) {
      records[Math.random() * records.length | 0] = record;
    } else {
      records.push(record);
    }
  }
  decode(bytes, inputOffset, byteLength) {
    const cachedValue = this.find(bytes, inputOffset, byteLength);
    if (cachedValue != null) {
      this.hit++;
      return cachedValue;
    }
    this.miss++;
    const str = utf8DecodeJs(bytes, inputOffset, byteLength);
    const slicedCopyOfBytes = Uint8Array.prototype.slice.call(bytes, inputOffset, inputOffset + byteLength);
    this.store(slicedCopyOfBytes, str);
    return str;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/Decoder.mjs
var STATE_ARRAY = "array";
var STATE_MAP_KEY = "map_key";
var STATE_MAP_VALUE = "map_value";
var mapKeyConverter = (key) => {
  if (typeof key === "string" || typeof key === "number") {
    return key;
  }
  throw new DecodeError("The type of key must be string or number but " + typeof key);
};
var StackPool = class {
  stack = [];
  stackHeadPosition = -1;
  get length() {
    return this.stackHeadPosition + 1;
  }
  top() {
    return this.stack[this.stackHeadPosition];
  }
  pushArrayState(size) {
    const state = this.getUninitializedStateFromPool();
    state.type = STATE_ARRAY;
    state.position = 0;
    state.size = size;
    state.array = new Array(size);
  }
  pushMapState(size) {
    const state = this.getUninitializedStateFromPool();
    state.type = STATE_MAP_KEY;
    state.readCount = 0;
    state.size = size;
    state.map = {};
  }
  getUninitializedStateFromPool() {
    this.stackHeadPosition++;
    if (this.stackHeadPosition === this.stack.length) {
      const partialState = {
        type: void 0,
        size: 0,
        array: void 0,
        position: 0,
        readCount: 0,
        map: void 0,
        key: null
      };
      this.stack.push(partialState);
    }
    return this.stack[this.stackHeadPosition];
  }
  release(state) {
    const topStackState = this.stack[this.stackHeadPosition];
    if (topStackState !== state) {
      throw new Error("Invalid stack state. Released state is not on top of the stack.");
    }
    if (state.type === STATE_ARRAY) {
      const partialState = state;
      partialState.size = 0;
      partialState.array = void 0;
      partialState.position = 0;
      partialState.type = void 0;
    }
    if (state.type === STATE_MAP_KEY || state.type === STATE_MAP_VALUE) {
      const partialState = state;
      partialState.size = 0;
      partialState.map = void 0;
      partialState.readCount = 0;
      partialState.type = void 0;
    }
    this.stackHeadPosition--;
  }
  reset() {
    this.stack.length = 0;
    this.stackHeadPosition = -1;
  }
};
var HEAD_BYTE_REQUIRED = -1;
var EMPTY_VIEW = new DataView(new ArrayBuffer(0));
var EMPTY_BYTES = new Uint8Array(EMPTY_VIEW.buffer);
try {
  EMPTY_VIEW.getInt8(0);
} catch (e) {
  if (!(e instanceof RangeError)) {
    throw new Error("This module is not supported in the current JavaScript engine because DataView does not throw RangeError on out-of-bounds access");
  }
}
var MORE_DATA = new RangeError("Insufficient data");
var sharedCachedKeyDecoder = new CachedKeyDecoder();
var Decoder = class _Decoder {
  extensionCodec;
  context;
  useBigInt64;
  rawStrings;
  maxStrLength;
  maxBinLength;
  maxArrayLength;
  maxMapLength;
  maxExtLength;
  keyDecoder;
  mapKeyConverter;
  totalPos = 0;
  pos = 0;
  view = EMPTY_VIEW;
  bytes = EMPTY_BYTES;
  headByte = HEAD_BYTE_REQUIRED;
  stack = new StackPool();
  entered = false;
  constructor(options) {
    this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
    this.context = options?.context;
    this.useBigInt64 = options?.useBigInt64 ?? false;
    this.rawStrings = options?.rawStrings ?? false;
    this.maxStrLength = options?.maxStrLength ?? UINT32_MAX;
    this.maxBinLength = options?.maxBinLength ?? UINT32_MAX;
    this.maxArrayLength = options?.maxArrayLength ?? UINT32_MAX;
    this.maxMapLength = options?.maxMapLength ?? UINT32_MAX;
    this.maxExtLength = options?.maxExtLength ?? UINT32_MAX;
    this.keyDecoder = options?.keyDecoder !== void 0 ? options.keyDecoder : sharedCachedKeyDecoder;
    this.mapKeyConverter = options?.mapKeyConverter ?? mapKeyConverter;
  }
  clone() {
    return new _Decoder({
      extensionCodec: this.extensionCodec,
      context: this.context,
      useBigInt64: this.useBigInt64,
      rawStrings: this.rawStrings,
      maxStrLength: this.maxStrLength,
      maxBinLength: this.maxBinLength,
      maxArrayLength: this.maxArrayLength,
      maxMapLength: this.maxMapLength,
      maxExtLength: this.maxExtLength,
      keyDecoder: this.keyDecoder
    });
  }
  reinitializeState() {
    this.totalPos = 0;
    this.headByte = HEAD_BYTE_REQUIRED;
    this.stack.reset();
  }
  setBuffer(buffer) {
    const bytes = ensureUint8Array(buffer);
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }
  appendBuffer(buffer) {
    if (this.headByte === HEAD_BYTE_REQUIRED && !this.hasRemaining(1)) {
      this.setBuffer(buffer);
    } else {
      const remainingData = this.bytes.subarray(this.pos);
      const newData = ensureUint8Array(buffer);
      const newBuffer = new Uint8Array(remainingData.length + newData.length);
      newBuffer.set(remainingData);
      newBuffer.set(newData, remainingData.length);
      this.setBuffer(newBuffer);
    }
  }
  hasRemaining(size) {
    return this.view.byteLength - this.pos >= size;
  }
  createExtraByteError(posToShow) {
    const { view, pos } = this;
    return new RangeError(`Extra ${view.byteLength - pos} of ${view.byteLength} byte(s) found at buffer[${posToShow}]`);
  }
  /**
   * @throws {@link DecodeError}
   * @throws {@link RangeError}
   */
  decode(buffer) {
    if (this.entered) {
      const instance = this.clone();
      return instance.decode(buffer);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.setBuffer(buffer);
      const object = this.doDecodeSync();
      if (this.hasRemaining(1)) {
        throw this.createExtraByteError(this.pos);
      }
      return object;
    } finally {
      this.entered = false;
    }
  }
  *decodeMulti(buffer) {
    if (this.entered) {
      const instance = this.clone();
      yield* instance.decodeMulti(buffer);
      return;
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.setBuffer(buffer);
      while (this.hasRemaining(1)) {
        yield this.doDecodeSync();
      }
    } finally {
      this.entered = false;
    }
  }
  async decodeAsync(stream) {
    if (this.entered) {
      const instance = this.clone();
      return instance.decodeAsync(stream);
    }
    try {
      this.entered = true;
      let decoded = false;
      let object;
      for await (const buffer of stream) {
        if (decoded) {
          this.entered = false;
          throw this.createExtraByteError(this.totalPos);
        }
        this.appendBuffer(buffer);
        try {
          object = this.doDecodeSync();
          decoded = true;
        } catch (e) {
          if (!(e instanceof RangeError)) {
            throw e;
          }
        }
        this.totalPos += this.pos;
      }
      if (decoded) {
        if (this.hasRemaining(1)) {
          throw this.createExtraByteError(this.totalPos);
        }
        return object;
      }
      const { headByte, pos, totalPos } = this;
      throw new RangeError(`Insufficient data in parsing ${prettyByte(headByte)} at ${totalPos} (${pos} in the current buffer)`);
    } finally {
      this.entered = false;
    }
  }
  decodeArrayStream(stream) {
    return this.decodeMultiAsync(stream, true);
  }
  decodeStream(stream) {
    return this.decodeMultiAsync(stream, false);
  }
  async *decodeMultiAsync(stream, isArray) {
    if (this.entered) {
      const instance = this.clone();
      yield* instance.decodeMultiAsync(stream, isArray);
      return;
    }
    try {
      this.entered = true;
      let isArrayHeaderRequired = isArray;
      let arrayItemsLeft = -1;
      for await (const buffer of stream) {
        if (isArray && arrayItemsLeft === 0) {
          throw this.createExtraByteError(this.totalPos);
        }
        this.appendBuffer(buffer);
        if (isArrayHeaderRequired) {
          arrayItemsLeft = this.readArraySize();
          isArrayHeaderRequired = false;
          this.complete();
        }
        try {
          while (true) {
            yield this.doDecodeSync();
            if (--arrayItemsLeft === 0) {
              break;
            }
          }
        } catch (e) {
          if (!(e instanceof RangeError)) {
            throw e;
          }
        }
        this.totalPos += this.pos;
      }
    } finally {
      this.entered = false;
    }
  }
  doDecodeSync() {
    DECODE: while (true) {
      const headByte = this.readHeadByte();
      let object;
      if (headByte >= 224) {
        object = headByte - 256;
      } else if (headByte < 192) {
        if (headByte < 128) {
          object = headByte;
        } else if (headByte < 144) {
          const size = headByte - 128;
          if (size !== 0) {
            this.pushMapState(size);
            this.complete();
            continue DECODE;
          } else {
            object = {};
          }
        } else if (headByte < 160) {
          const size = headByte - 144;
          if (size !== 0) {
            this.pushArrayState(size);
            this.complete();
            continue DECODE;
          } else {
            object = [];
          }
        } else {
          const byteLength = headByte - 160;
          object = this.decodeString(byteLength, 0);
        }
      } else if (headByte === 192) {
        object = null;
      } else if (headByte === 194) {
        object = false;
      } else if (headByte === 195) {
        object = true;
      } else if (headByte === 202) {
        object = this.readF32();
      } else if (headByte === 203) {
        object = this.readF64();
      } else if (headByte === 204) {
        object = this.readU8();
      } else if (headByte === 205) {
        object = this.readU16();
      } else if (headByte === 206) {
        object = this.readU32();
      } else if (headByte === 207) {
        if (this.useBigInt64) {
          object = this.readU64AsBigInt();
        } else {
          object = this.readU64();
        }
      } else if (headByte === 208) {
        object = this.readI8();
      } else if (headByte === 209) {
        object = this.readI16();
      } else if (headByte === 210) {
        object = this.readI32();
      } else if (headByte === 211) {
        if (this.useBigInt64) {
          object = this.readI64AsBigInt();
        } else {
          object = this.readI64();
        }
      } else if (headByte === 217) {
        const byteLength = this.lookU8();
        object = this.decodeString(byteLength, 1);
      } else if (headByte === 218) {
        const byteLength = this.lookU16();
        object = this.decodeString(byteLength, 2);
      } else if (headByte === 219) {
        const byteLength = this.lookU32();
        object = this.decodeString(byteLength, 4);
      } else if (headByte === 220) {
        const size = this.readU16();
        if (size !== 0) {
          this.pushArrayState(size);
          this.complete();
          continue DECODE;
        } else {
          object = [];
        }
      } else if (headByte === 221) {
        const size = this.readU32();
        if (size !== 0) {
          this.pushArrayState(size);
          this.complete();
          continue DECODE;
        } else {
          object = [];
        }
      } else if (headByte === 222) {
        const size = this.readU16();
        if (size !== 0) {
          this.pushMapState(size);
          this.complete();
          continue DECODE;
        } else {
          object = {};
        }
      } else if (headByte === 223) {
        const size = this.readU32();
        if (size !== 0) {
          this.pushMapState(size);
          this.complete();
          continue DECODE;
        } else {
          object = {};
        }
      } else if (headByte === 196) {
        const size = this.lookU8();
        object = this.decodeBinary(size, 1);
      } else if (headByte === 197) {
        const size = this.lookU16();
        object = this.decodeBinary(size, 2);
      } else if (headByte === 198) {
        const size = this.lookU32();
        object = this.decodeBinary(size, 4);
      } else if (headByte === 212) {
        object = this.decodeExtension(1, 0);
      } else if (headByte === 213) {
        object = this.decodeExtension(2, 0);
      } else if (headByte === 214) {
        object = this.decodeExtension(4, 0);
      } else if (headByte === 215) {
        object = this.decodeExtension(8, 0);
      } else if (headByte === 216) {
        object = this.decodeExtension(16, 0);
      } else if (headByte === 199) {
        const size = this.lookU8();
        object = this.decodeExtension(size, 1);
      } else if (headByte === 200) {
        const size = this.lookU16();
        object = this.decodeExtension(size, 2);
      } else if (headByte === 201) {
        const size = this.lookU32();
        object = this.decodeExtension(size, 4);
      } else {
        throw new DecodeError(`Unrecognized type byte: ${prettyByte(headByte)}`);
      }
      this.complete();
      const stack = this.stack;
      while (stack.length > 0) {
        const state = stack.top();
        if (state.type === STATE_ARRAY) {
          state.array[state.position] = object;
          state.position++;
          if (state.position === state.size) {
            object = state.array;
            stack.release(state);
          } else {
            continue DECODE;
          }
        } else if (state.type === STATE_MAP_KEY) {
          if (object === "__proto__") {
            throw new DecodeError("The key __proto__ is not allowed");
          }
          state.key = this.mapKeyConverter(object);
          state.type = STATE_MAP_VALUE;
          continue DECODE;
        } else {
          state.map[state.key] = object;
          state.readCount++;
          if (state.readCount === state.size) {
            object = state.map;
            stack.release(state);
          } else {
            state.key = null;
            state.type = STATE_MAP_KEY;
            continue DECODE;
          }
        }
      }
      return object;
    }
  }
  readHeadByte() {
    if (this.headByte === HEAD_BYTE_REQUIRED) {
      this.headByte = this.readU8();
    }
    return this.headByte;
  }
  complete() {
    this.headByte = HEAD_BYTE_REQUIRED;
  }
  readArraySize() {
    const headByte = this.readHeadByte();
    switch (headByte) {
      case 220:
        return this.readU16();
      case 221:
        return this.readU32();
      default: {
        if (headByte < 160) {
          return headByte - 144;
        } else {
          throw new DecodeError(`Unrecognized array type byte: ${prettyByte(headByte)}`);
        }
      }
    }
  }
  pushMapState(size) {
    if (size > this.maxMapLength) {
      throw new DecodeError(`Max length exceeded: map length (${size}) > maxMapLengthLength (${this.maxMapLength})`);
    }
    this.stack.pushMapState(size);
  }
  pushArrayState(size) {
    if (size > this.maxArrayLength) {
      throw new DecodeError(`Max length exceeded: array length (${size}) > maxArrayLength (${this.maxArrayLength})`);
    }
    this.stack.pushArrayState(size);
  }
  decodeString(byteLength, headerOffset) {
    if (!this.rawStrings || this.stateIsMapKey()) {
      return this.decodeUtf8String(byteLength, headerOffset);
    }
    return this.decodeBinary(byteLength, headerOffset);
  }
  /**
   * @throws {@link RangeError}
   */
  decodeUtf8String(byteLength, headerOffset) {
    if (byteLength > this.maxStrLength) {
      throw new DecodeError(`Max length exceeded: UTF-8 byte length (${byteLength}) > maxStrLength (${this.maxStrLength})`);
    }
    if (this.bytes.byteLength < this.pos + headerOffset + byteLength) {
      throw MORE_DATA;
    }
    const offset = this.pos + headerOffset;
    let object;
    if (this.stateIsMapKey() && this.keyDecoder?.canBeCached(byteLength)) {
      object = this.keyDecoder.decode(this.bytes, offset, byteLength);
    } else {
      object = utf8Decode(this.bytes, offset, byteLength);
    }
    this.pos += headerOffset + byteLength;
    return object;
  }
  stateIsMapKey() {
    if (this.stack.length > 0) {
      const state = this.stack.top();
      return state.type === STATE_MAP_KEY;
    }
    return false;
  }
  /**
   * @throws {@link RangeError}
   */
  decodeBinary(byteLength, headOffset) {
    if (byteLength > this.maxBinLength) {
      throw new DecodeError(`Max length exceeded: bin length (${byteLength}) > maxBinLength (${this.maxBinLength})`);
    }
    if (!this.hasRemaining(byteLength + headOffset)) {
      throw MORE_DATA;
    }
    const offset = this.pos + headOffset;
    const object = this.bytes.subarray(offset, offset + byteLength);
    this.pos += headOffset + byteLength;
    return object;
  }
  decodeExtension(size, headOffset) {
    if (size > this.maxExtLength) {
      throw new DecodeError(`Max length exceeded: ext length (${size}) > maxExtLength (${this.maxExtLength})`);
    }
    const extType = this.view.getInt8(this.pos + headOffset);
    const data = this.decodeBinary(
      size,
      headOffset + 1
      /* extType */
    );
    return this.extensionCodec.decode(data, extType, this.context);
  }
  lookU8() {
    return this.view.getUint8(this.pos);
  }
  lookU16() {
    return this.view.getUint16(this.pos);
  }
  lookU32() {
    return this.view.getUint32(this.pos);
  }
  readU8() {
    const value = this.view.getUint8(this.pos);
    this.pos++;
    return value;
  }
  readI8() {
    const value = this.view.getInt8(this.pos);
    this.pos++;
    return value;
  }
  readU16() {
    const value = this.view.getUint16(this.pos);
    this.pos += 2;
    return value;
  }
  readI16() {
    const value = this.view.getInt16(this.pos);
    this.pos += 2;
    return value;
  }
  readU32() {
    const value = this.view.getUint32(this.pos);
    this.pos += 4;
    return value;
  }
  readI32() {
    const value = this.view.getInt32(this.pos);
    this.pos += 4;
    return value;
  }
  readU64() {
    const value = getUint64(this.view, this.pos);
    this.pos += 8;
    return value;
  }
  readI64() {
    const value = getInt64(this.view, this.pos);
    this.pos += 8;
    return value;
  }
  readU64AsBigInt() {
    const value = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return value;
  }
  readI64AsBigInt() {
    const value = this.view.getBigInt64(this.pos);
    this.pos += 8;
    return value;
  }
  readF32() {
    const value = this.view.getFloat32(this.pos);
    this.pos += 4;
    return value;
  }
  readF64() {
    const value = this.view.getFloat64(this.pos);
    this.pos += 8;
    return value;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/decode.mjs
function decode(buffer, options) {
  const decoder = new Decoder(options);
  return decoder.decode(buffer);
}

// src/switchboard.ts
var SignalingError = class extends Error {
  code;
  constructor(code, message) {
    super(message);
    this.name = "SignalingError";
    this.code = code;
  }
};
var SUBPROTOCOL_MSGPACK = "webrtc-signaling.msgpack";
var TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
var DEFAULTS = {
  protocols: ["webrtc-signaling"],
  reconnectBaseMs: 1e3,
  reconnectMaxMs: 3e4,
  maxReconnectAttempts: null,
  stableAfterMs: 1e4,
  heartbeatIntervalMs: 15e3,
  heartbeatTimeoutMs: 1e4,
  connectTimeoutMs: 1e4,
  closeTimeoutMs: 1e3,
  // Well below the 512 ids the server remembers per session, so a retransmitted
  // id is always recognised.
  queueMaxMessages: 256,
  queueMaxBytes: 1024 * 1024,
  maxMessageBytes: 64 * 1024,
  // Below the server's default rate-limit burst (50).
  maxInFlight: 32,
  // The server sends at most one `rate-limited` per second: after a pause this
  // long, a message dropped again yields a new error.
  rateLimitPauseMs: 1e3,
  ackEvery: 16,
  ackDelayMs: 100
};
var CLOSE = {
  NORMAL: 1e3,
  HEARTBEAT_TIMEOUT: 4e3,
  UNAUTHORIZED: 4401,
  KICKED: 4403,
  REPLACED: 4409,
  JOIN_REFUSED: 4400
};
function backoffCeiling(attempt, baseMs, maxMs) {
  const exponent = Math.min(Math.max(attempt - 1, 0), 31);
  return Math.min(maxMs, baseMs * 2 ** exponent);
}
function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 128) n += 1;
    else if (c < 2048) n += 2;
    else if (c >= 55296 && c <= 56319 && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
function report(error) {
  const g = globalThis;
  if (typeof g.reportError === "function") g.reportError(error);
  else console.error(error);
}
function answer(entry, result) {
  const reply = entry.reply;
  entry.reply = null;
  if (!reply) return;
  if ("ok" in result) reply.resolve(result.ok);
  else reply.reject(result.err);
}
var Outbox = class {
  constructor(s) {
    this.s = s;
  }
  s;
  entries = [];
  bytes = 0;
  nextId = 1;
  /**
   * Adds a message and assigns its `id`. At the bound the message is refused with
   * `queue-full` and nothing is queued (dropping an older one would break the
   * ordering and exactly-once promises of a message its caller believes sent).
   */
  push(kind, fields, reply) {
    const id = this.nextId;
    let text;
    try {
      text = JSON.stringify({ ...fields, id });
    } catch (e) {
      return new SignalingError("invalid-message", `the message can not be serialized: ${String(e)}`);
    }
    const bytes = utf8Length(text);
    if (bytes > this.s.maxMessageBytes) {
      return new SignalingError("message-too-big", `the message is ${bytes} bytes, the limit is ${this.s.maxMessageBytes}`);
    }
    if (this.entries.length >= this.s.queueMaxMessages) {
      return new SignalingError("queue-full", `${this.entries.length} messages are waiting for the server's acknowledgement (limit ${this.s.queueMaxMessages})`);
    }
    if (this.bytes + bytes > this.s.queueMaxBytes) {
      return new SignalingError("queue-full", `${this.bytes} bytes are waiting for the server's acknowledgement; ${bytes} more would pass the limit of ${this.s.queueMaxBytes}`);
    }
    this.nextId++;
    this.bytes += bytes;
    this.entries.push({ id, kind, text, bytes, reply, written: false, sent: false });
    return null;
  }
  /**
   * The client's own re-joins after a failed resume go first and outside the
   * bound (one per room the application had joined): the rooms must be joined
   * before queued messages addressed to them are sent.
   */
  pushRejoinsFront(rooms, identity) {
    const rejoins = rooms.map((room) => {
      const id = this.nextId++;
      const text = JSON.stringify({ ...identity, type: "join", roomId: room, id });
      const bytes = utf8Length(text);
      this.bytes += bytes;
      return { id, kind: { t: "join", room, rejoin: true }, text, bytes, reply: null, written: false, sent: false };
    });
    this.entries.unshift(...rejoins);
  }
  /** Texts not yet written on this connection, oldest first, keeping at most `maxInFlight` unacknowledged. */
  takeUnwritten(maxInFlight) {
    let room = maxInFlight - this.inFlight();
    const out = [];
    for (const e of this.entries) {
      if (room <= 0) break;
      if (e.written) continue;
      room--;
      e.written = true;
      e.sent = true;
      out.push(e.text);
    }
    return out;
  }
  inFlight() {
    let n = 0;
    for (const e of this.entries) if (e.written) n++;
    return n;
  }
  markAllUnwritten() {
    for (const e of this.entries) e.written = false;
  }
  remove(id) {
    return this.removeFirst((e) => e.id === id);
  }
  removeFirst(pred) {
    const i = this.entries.findIndex(pred);
    if (i < 0) return void 0;
    const [e] = this.entries.splice(i, 1);
    this.bytes -= e.bytes;
    return e;
  }
  removeWhere(pred) {
    const removed = [];
    this.entries = this.entries.filter((e) => {
      if (!pred(e)) return true;
      this.bytes -= e.bytes;
      removed.push(e);
      return false;
    });
    return removed;
  }
  drain() {
    const all = this.entries;
    this.entries = [];
    this.bytes = 0;
    return all;
  }
};
function parseId(v) {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^\d+$/.test(v)) return Number(v);
  return null;
}
var SignalingClient = class {
  url;
  s;
  WS;
  token;
  tokenIn;
  /** The last attempt with a subprotocol token failed before the socket opened. */
  tokenViaMessage = false;
  storage;
  storageKey;
  handlers = /* @__PURE__ */ new Map();
  outbox;
  identity = {};
  phase = "connecting";
  ws = null;
  /** Bumped per connection: callbacks of an abandoned socket are ignored. */
  generation = 0;
  session = null;
  /** A fresh session offered by `connected`, adopted unless the resume succeeds. */
  fresh = null;
  restored = false;
  lastSeq = 0;
  unacked = 0;
  roomList = [];
  /** Joins whose `ack` came before their `room-info`. */
  awaitingRoomInfo = [];
  rejoin = null;
  attempt = 0;
  establishedAt = 0;
  drainHintMs = null;
  pausedUntil = null;
  rejectedToken = null;
  currentToken = null;
  closedReason = null;
  closeRequested = false;
  timers = {
    connect: null,
    reconnect: null,
    ping: null,
    liveness: null,
    ack: null,
    pause: null
  };
  done;
  resolveDone;
  onOnline = () => {
    if (this.phase === "waiting") {
      this.clearTimer("reconnect");
      this.connect();
    }
  };
  constructor(url, options = {}) {
    this.url = url;
    const s = { ...DEFAULTS };
    for (const k of Object.keys(DEFAULTS)) {
      const v = options[k];
      if (v !== void 0) s[k] = v;
    }
    this.s = s;
    const positive = ["reconnectBaseMs", "heartbeatIntervalMs", "heartbeatTimeoutMs", "connectTimeoutMs", "queueMaxMessages", "queueMaxBytes", "maxMessageBytes", "maxInFlight", "ackEvery"];
    for (const k of positive) {
      if (!(typeof s[k] === "number" && s[k] > 0)) throw new TypeError(`${k} must be a positive number`);
    }
    if (s.reconnectMaxMs < s.reconnectBaseMs) throw new TypeError("reconnectMaxMs must be at least reconnectBaseMs");
    if (!/^wss?:\/\//.test(url)) throw new TypeError("the URL must start with ws:// or wss://");
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (!WS) throw new TypeError("no WebSocket implementation: pass options.WebSocket");
    this.WS = WS;
    this.token = options.token;
    if (options.tokenIn !== void 0 && options.tokenIn !== "subprotocol" && options.tokenIn !== "message") {
      throw new TypeError("tokenIn must be 'subprotocol' or 'message'");
    }
    this.tokenIn = options.tokenIn ?? "subprotocol";
    if (options.encoding !== void 0 && options.encoding !== "json" && options.encoding !== "msgpack") {
      throw new TypeError("encoding must be 'json' or 'msgpack'");
    }
    if (options.encoding === "msgpack" && options.protocols === void 0) s.protocols = [SUBPROTOCOL_MSGPACK];
    this.outbox = new Outbox(s);
    this.storage = options.storage !== void 0 ? options.storage : defaultStorage();
    this.storageKey = options.storageKey ?? `switchboard:${url}`;
    this.done = new Promise((resolve) => this.resolveDone = resolve);
    if (options.userId !== void 0) this.identity.userId = options.userId;
    if (options.displayName !== void 0) this.identity.displayName = options.displayName;
    if (options.metadata !== void 0) this.identity.metadata = options.metadata;
    this.restore(options.userId);
    const g = globalThis;
    if (typeof g.addEventListener === "function") g.addEventListener("online", this.onOnline);
    queueMicrotask(() => void this.connect());
  }
  // -- public API -----------------------------------------------------------
  /** Joins a room; resolves with its `room-info`, or rejects with `room-full`, `user-id-taken`, … */
  join(roomId) {
    return this.enqueue({ t: "join", room: roomId, rejoin: false }, { ...this.identity, type: "join", roomId });
  }
  /** Leaves one room, or every room without an argument. */
  leave(roomId) {
    const fields = { type: "leave" };
    if (roomId !== void 0) fields.roomId = roomId;
    return this.enqueue({ t: "leave", room: roomId ?? null }, fields);
  }
  /** Sends an SDP offer to peer `to` (`roomId` is needed only when in several rooms). */
  sendOffer(to, sdp, roomId) {
    return this.sendTo("offer", to, { sdp }, roomId);
  }
  sendAnswer(to, sdp, roomId) {
    return this.sendTo("answer", to, { sdp }, roomId);
  }
  /** Sends an ICE candidate (`null`: end of candidates). */
  sendCandidate(to, candidate, roomId) {
    return this.sendTo("candidate", to, { candidate }, roomId);
  }
  /** Application data to one peer, or with `to = null` to every other peer of the room. */
  send(to, data, roomId) {
    const fields = { type: "message", data };
    if (to !== null) fields.to = to;
    if (roomId !== void 0) fields.roomId = roomId;
    return this.enqueue({ t: "other" }, fields);
  }
  /** A chat line to the whole room (the sender gets it back too). */
  chat(content, roomId) {
    const fields = { type: "chat", content };
    if (roomId !== void 0) fields.roomId = roomId;
    return this.enqueue({ t: "other" }, fields);
  }
  /**
   * Any client message (`join`, `leave`, `offer`, `answer`, `candidate`,
   * `message`, `chat`, `auth`, or one of the server's app types such as
   * `hangup`) as an object with its `type`; extra fields are relayed as they
   * are. Resolves with the `room-info` of a `join`, else `null`; a type the
   * server does not know is refused by it (`unknown-type`).
   */
  sendJson(message) {
    const type = message?.type;
    let kind;
    switch (type) {
      case "join":
        if (typeof message.roomId !== "string") return this.refused(new SignalingError("invalid-message", "`join` needs a string `roomId`"));
        kind = { t: "join", room: message.roomId, rejoin: false };
        break;
      case "leave":
        kind = { t: "leave", room: typeof message.roomId === "string" ? message.roomId : null };
        break;
      case "ping":
      case "ack":
      case "resume":
        return this.refused(new SignalingError("invalid-message", "`ping`, `ack` and `resume` are sent by the client itself"));
      default:
        if (typeof type !== "string" || type === "") return this.refused(new SignalingError("invalid-message", "`type` must be a string"));
        kind = { t: "other" };
    }
    return this.enqueue(kind, message);
  }
  on(type, handler) {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, set = /* @__PURE__ */ new Set());
    set.add(handler);
    return () => this.off(type, handler);
  }
  off(type, handler) {
    this.handlers.get(type)?.delete(handler);
  }
  /**
   * Closes for good: no more reconnects. When connected, queued messages are
   * written and their acknowledgements awaited up to `closeTimeoutMs`, then the
   * socket closes with 1000 (the server ends the membership at once: peers see
   * `user-left` with `closed`). Pending sends reject with `closed`; the stored
   * session is forgotten. Resolves when done.
   */
  close() {
    if (this.closeRequested || this.phase === "closed") return this.done;
    this.closeRequested = true;
    if (this.phase === "established" && this.ws) {
      this.phase = "closing";
      this.flush();
      const deadline = setTimeout(() => this.finishClose(), this.s.closeTimeoutMs);
      const check = () => {
        if (this.outbox.entries.length === 0) {
          clearTimeout(deadline);
          this.finishClose();
        }
      };
      this.afterAck = check;
      check();
    } else {
      this.abandonSocket(CLOSE.NORMAL, "closed by the client");
      this.finish(CLOSE.NORMAL, "closed by the application");
    }
    return this.done;
  }
  /** The connection state. */
  get state() {
    switch (this.phase) {
      case "established":
        return "connected";
      case "waiting":
        return "reconnecting";
      case "closing":
      case "closed":
        return "closed";
      default:
        return this.attempt === 0 ? "connecting" : "reconnecting";
    }
  }
  /** Whether a session is established right now. */
  get connected() {
    return this.phase === "established";
  }
  /** The user id: configured, kept from an earlier page, or assigned by the server. */
  get userId() {
    return typeof this.identity.userId === "string" ? this.identity.userId : null;
  }
  /** The server session id (the same across resumes). */
  get sessionId() {
    return this.session?.id ?? null;
  }
  /** Rooms joined (confirmed by `room-info`), in join order. */
  get rooms() {
    return [...this.roomList];
  }
  /** Messages in the outbox (queued, or written and awaiting their acknowledgement). */
  get pending() {
    return this.outbox.entries.length;
  }
  // -- events ---------------------------------------------------------------
  emit(event) {
    for (const key of [event.type, "*"]) {
      const set = this.handlers.get(key);
      if (!set) continue;
      for (const h of [...set]) {
        try {
          h(event);
        } catch (e) {
          report(e);
        }
      }
    }
  }
  // -- sending --------------------------------------------------------------
  sendTo(type, to, body, roomId) {
    const fields = { type, to, ...body };
    if (roomId !== void 0) fields.roomId = roomId;
    return this.enqueue({ t: "other" }, fields);
  }
  refused(error) {
    const p = Promise.reject(error);
    p.catch(() => {
    });
    return p;
  }
  enqueue(kind, fields) {
    if (this.closedReason !== null || this.closeRequested) {
      return this.refused(new SignalingError("closed", this.closedReason ?? "the client is closing"));
    }
    let reply;
    const p = new Promise((resolve, reject) => reply = { resolve, reject });
    p.catch(() => {
    });
    const error = this.outbox.push(kind, fields, reply);
    if (error) return this.refused(error);
    this.flush();
    return p;
  }
  /** Writes outbox messages not yet written on this connection, up to `maxInFlight`. */
  flush() {
    if (this.phase !== "established" && this.phase !== "closing" || !this.ws) return;
    if (this.pausedUntil !== null) return;
    for (const text of this.outbox.takeUnwritten(this.s.maxInFlight)) this.write(text);
  }
  sendRaw(message) {
    this.write(JSON.stringify(message));
  }
  /** One message in the encoding the server selected (the outbox keeps JSON text, which its bounds count). */
  write(text) {
    const ws = this.ws;
    if (!ws) return;
    ws.send(ws.protocol === SUBPROTOCOL_MSGPACK ? encode(JSON.parse(text)) : text);
  }
  // -- connection life cycle ------------------------------------------------
  clearTimer(name) {
    const t = this.timers[name];
    if (t !== null) clearTimeout(t);
    this.timers[name] = null;
  }
  clearTimers() {
    this.stopServing();
    this.clearTimer("reconnect");
  }
  async connect() {
    if (this.closeRequested) return;
    this.phase = "connecting";
    const gen = ++this.generation;
    this.emit({ type: "connecting", attempt: this.attempt });
    this.timers.connect = setTimeout(() => {
      if (gen !== this.generation) return;
      this.abandonSocket(CLOSE.NORMAL, "connect timeout");
      this.lost(null, `no session within ${this.s.connectTimeoutMs} ms`, false);
    }, this.s.connectTimeoutMs);
    let token = null;
    if (this.token !== void 0) {
      try {
        token = typeof this.token === "function" ? await this.token() : this.token;
      } catch (e) {
        if (gen !== this.generation) return;
        this.clearTimer("connect");
        return this.lost(null, `the token provider failed: ${String(e)}`, false);
      }
      if (gen !== this.generation) return;
      if (token === this.rejectedToken) {
        this.clearTimer("connect");
        return this.finish(CLOSE.UNAUTHORIZED, "the server refused the token and no new token was provided");
      }
      this.currentToken = token;
    }
    const inProtocol = token !== null && this.tokenIn === "subprotocol" && !this.tokenViaMessage && TOKEN_CHARS.test(token);
    const protocols = inProtocol ? [...this.s.protocols, `bearer.${token}`] : this.s.protocols;
    let ws;
    try {
      ws = new this.WS(this.url, protocols);
    } catch (e) {
      this.clearTimer("connect");
      return this.finish(null, `can not open a WebSocket: ${String(e)}`);
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.phase = "handshake";
    let opened = false;
    ws.onopen = () => {
      if (gen !== this.generation) return;
      opened = true;
      this.tokenViaMessage = false;
      this.emit({ type: "open" });
      if (token !== null && !inProtocol) this.sendRaw({ type: "auth", token });
    };
    ws.onmessage = (ev) => {
      if (gen === this.generation) this.onFrame(ev.data);
    };
    ws.onerror = () => {
    };
    ws.onclose = (ev) => {
      if (gen !== this.generation) return;
      if (inProtocol && !opened) this.tokenViaMessage = true;
      this.onSocketClosed(ev.code, ev.reason);
    };
  }
  /** Stops listening to the current socket and closes it (best effort: it may be dead). */
  abandonSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.generation++;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
    }
  }
  onSocketClosed(code, reason) {
    const wasEstablished = this.phase === "established" || this.phase === "closing";
    const stable = wasEstablished && Date.now() - this.establishedAt >= this.s.stableAfterMs;
    this.ws = null;
    this.generation++;
    this.stopServing();
    if (this.closeRequested) return this.finish(code, reason || "closed by the application");
    const why = (what) => reason ? `${what}: ${reason}` : what;
    switch (code) {
      case CLOSE.KICKED:
        return this.finish(code, why("kicked"));
      case CLOSE.REPLACED:
        return this.finish(code, why("the session was taken over by a newer connection"));
      case CLOSE.JOIN_REFUSED:
        return this.finish(code, why("the join the URL asks for was refused"));
      case CLOSE.UNAUTHORIZED:
        this.rejectedToken = this.currentToken;
        if (typeof this.token !== "function") return this.finish(code, why("unauthorized"));
        break;
    }
    this.lost(code, why(wasEstablished ? "connection lost" : "connection failed"), stable);
  }
  stopServing() {
    this.clearTimer("connect");
    this.clearTimer("liveness");
    this.clearTimer("ack");
    this.clearTimer("pause");
    if (this.timers.ping !== null) clearInterval(this.timers.ping);
    this.timers.ping = null;
    this.pausedUntil = null;
  }
  /** The connection is gone: back off and try again, or give up. */
  lost(code, reason, stable) {
    this.stopServing();
    if (this.closeRequested) return this.finish(code, reason);
    if (stable) this.attempt = 0;
    this.attempt++;
    const max = this.s.maxReconnectAttempts;
    if (max !== null && this.attempt > max) {
      const attempts = this.attempt - 1;
      this.emit({ type: "reconnect-failed", attempts });
      return this.finish(code, `gave up after ${attempts} reconnect attempts; last: ${reason}`);
    }
    const ceiling = this.drainHintMs ?? backoffCeiling(this.attempt, this.s.reconnectBaseMs, this.s.reconnectMaxMs);
    this.drainHintMs = null;
    const delayMs = Math.floor(Math.random() * (ceiling + 1));
    this.phase = "waiting";
    this.emit({ type: "reconnecting", attempt: this.attempt, delayMs, code, reason });
    if (this.phase !== "waiting") return;
    this.timers.reconnect = setTimeout(() => {
      this.timers.reconnect = null;
      void this.connect();
    }, delayMs);
  }
  /** Closes for good: later sends fail, pending ones reject, `closed` is emitted. */
  finish(code, reason) {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.closedReason = reason;
    this.clearTimers();
    this.abandonSocket(CLOSE.NORMAL, reason.slice(0, 100));
    const g = globalThis;
    if (typeof g.removeEventListener === "function") g.removeEventListener("online", this.onOnline);
    const error = new SignalingError("closed", reason);
    for (const e of this.outbox.drain()) answer(e, { err: error });
    for (const w of this.awaitingRoomInfo.splice(0)) w.reply.reject(error);
    this.session = null;
    this.roomList = [];
    this.persist();
    this.emit({ type: "closed", code, reason });
    this.resolveDone();
  }
  /** `close()` while connected, once the outbox is empty or the close timeout passed. */
  afterAck = null;
  finishClose() {
    if (this.phase === "closed") return;
    this.afterAck = null;
    if (this.unacked > 0) this.sendRaw({ type: "ack", seq: this.lastSeq });
    this.unacked = 0;
    this.abandonSocket(CLOSE.NORMAL, "closed by the client");
    this.finish(CLOSE.NORMAL, "closed by the application");
  }
  // -- inbound --------------------------------------------------------------
  onFrame(data) {
    let msg;
    try {
      let v;
      if (typeof data === "string") v = JSON.parse(data);
      else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) v = decode(data);
      else return;
      if (typeof v !== "object" || v === null || Array.isArray(v) || typeof v.type !== "string") return;
      msg = v;
    } catch {
      return;
    }
    switch (this.phase) {
      case "handshake":
        return this.onHandshake(msg);
      case "resuming":
        return this.onResumeAnswer(msg);
      case "established":
      case "closing":
        this.armLiveness();
        this.onMessage(msg);
        this.scheduleAck();
        return;
    }
  }
  onHandshake(msg) {
    if (msg.type !== "connected") return;
    if (typeof msg.sessionId !== "string" || typeof msg.resumeToken !== "string") {
      this.abandonSocket(CLOSE.NORMAL, "bad connected");
      return this.lost(null, "`connected` without sessionId/resumeToken", false);
    }
    this.fresh = { id: msg.sessionId, resumeToken: msg.resumeToken };
    this.emit(msg);
    if (this.session) {
      this.phase = "resuming";
      this.sendRaw({ type: "resume", sessionId: this.session.id, resumeToken: this.session.resumeToken, lastSeq: this.lastSeq });
    } else {
      this.adopt();
      this.established("first");
    }
  }
  onResumeAnswer(msg) {
    if (msg.type === "resumed") {
      if (this.session && typeof msg.resumeToken === "string") this.session.resumeToken = msg.resumeToken;
      const restored = this.restored;
      this.restored = false;
      this.emit({ ...msg, restored });
      this.established("resumed");
    } else if (msg.type === "error" && msg.code !== "unauthorized") {
      this.restored = false;
      this.adopt();
      this.acceptSeq(msg.seq);
      this.emit(msg);
      this.established("resume-failed");
    }
  }
  /** Takes the session offered by `connected`: its `seq`s start at 1. */
  adopt() {
    this.session = this.fresh;
    this.lastSeq = 0;
    this.unacked = 0;
    this.persist();
  }
  established(start) {
    this.clearTimer("connect");
    this.phase = "established";
    this.establishedAt = Date.now();
    this.pausedUntil = null;
    let rejoined = null;
    if (start === "resume-failed") {
      for (const e of this.outbox.removeWhere((e2) => e2.kind.t === "leave")) {
        const room = e.kind.room;
        this.roomList = room === null ? [] : this.roomList.filter((r) => r !== room);
        answer(e, { ok: null });
      }
      this.outbox.removeWhere((e) => e.kind.t === "join" && e.kind.rejoin);
      const lostError = new SignalingError("resume-failed", "written on a session the server could not resume; not sent again");
      for (const e of this.outbox.removeWhere((e2) => e2.sent)) answer(e, { err: lostError });
      for (const w of this.awaitingRoomInfo.splice(0)) w.reply.reject(lostError);
      const rooms = [...this.roomList];
      this.outbox.pushRejoinsFront(rooms, this.identity);
      if (rooms.length === 0) rejoined = [];
      else this.rejoin = { rooms, pending: new Set(rooms) };
    }
    this.outbox.markAllUnwritten();
    this.armLiveness();
    this.timers.ping = setInterval(() => this.sendRaw({ type: "ping", timestamp: Date.now() }), this.s.heartbeatIntervalMs);
    this.flush();
    if (rejoined) this.emit({ type: "rejoined", rooms: rejoined });
  }
  /** Any frame from the server is a sign of life; silence past the deadline means dead. */
  armLiveness() {
    this.clearTimer("liveness");
    const deadAfter = this.s.heartbeatIntervalMs + this.s.heartbeatTimeoutMs;
    this.timers.liveness = setTimeout(() => {
      this.timers.liveness = null;
      const stable = Date.now() - this.establishedAt >= this.s.stableAfterMs;
      this.abandonSocket(CLOSE.HEARTBEAT_TIMEOUT, "heartbeat timeout");
      if (this.closeRequested) return this.finish(CLOSE.HEARTBEAT_TIMEOUT, "closed by the application");
      this.lost(CLOSE.HEARTBEAT_TIMEOUT, `no frame from the server for ${deadAfter} ms`, stable);
    }, deadAfter);
  }
  /** `true` for a message already delivered (a replay overlapping what this client had). */
  acceptSeq(seq) {
    if (typeof seq !== "number") return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    this.unacked++;
    this.persist();
    return true;
  }
  /** Cumulative acks: after `ackEvery` messages, or `ackDelayMs` after the first one. */
  scheduleAck() {
    if (this.unacked >= this.s.ackEvery) {
      this.clearTimer("ack");
      this.sendAck();
    } else if (this.unacked > 0 && this.timers.ack === null) {
      this.timers.ack = setTimeout(() => {
        this.timers.ack = null;
        this.sendAck();
      }, this.s.ackDelayMs);
    }
  }
  sendAck() {
    if (this.unacked === 0) return;
    this.unacked = 0;
    this.sendRaw({ type: "ack", seq: this.lastSeq });
  }
  onMessage(msg) {
    if (!this.acceptSeq(msg.seq)) return;
    let after = null;
    switch (msg.type) {
      // The client's own bookkeeping: not emitted.
      case "ack": {
        const id = parseId(msg.id);
        if (id !== null) this.onAck(id);
        return;
      }
      case "pong":
        return;
      case "room-info":
        after = this.onRoomInfo(msg);
        break;
      case "error":
        after = this.onError(msg);
        break;
      case "draining":
        if (typeof msg.retryAfterMs === "number") this.drainHintMs = msg.retryAfterMs;
        break;
    }
    this.emit(msg);
    if (after) this.emit(after);
  }
  onAck(id) {
    const entry = this.outbox.remove(id);
    if (entry) {
      const kind = entry.kind;
      if (kind.t === "join") {
        if (entry.reply) this.awaitingRoomInfo.push({ id, room: kind.room, reply: entry.reply });
        entry.reply = null;
      } else {
        if (kind.t === "leave") {
          this.roomList = kind.room === null ? [] : this.roomList.filter((r) => r !== kind.room);
          this.persist();
        }
        answer(entry, { ok: null });
      }
    }
    this.flush();
    this.afterAck?.();
  }
  onRoomInfo(info) {
    const room = info.roomId;
    if (typeof room !== "string") return null;
    if (!this.roomList.includes(room)) this.roomList.push(room);
    if (this.identity.userId === void 0) {
      const you = info.you;
      const id = typeof you === "string" ? you : you?.userId;
      if (typeof id === "string") this.identity.userId = id;
    }
    this.persist();
    const i = this.awaitingRoomInfo.findIndex((w) => w.room === room);
    if (i >= 0) {
      this.awaitingRoomInfo.splice(i, 1)[0].reply.resolve(info);
    } else {
      const e = this.outbox.removeFirst((e2) => e2.sent && e2.kind.t === "join" && e2.kind.room === room);
      if (e) answer(e, { ok: info });
      this.flush();
      this.afterAck?.();
    }
    return this.rejoinProgress(room, true);
  }
  /** One re-join answered; `rejoined` once all are. */
  rejoinProgress(room, joined) {
    const r = this.rejoin;
    if (!r || !r.pending.delete(room)) return null;
    if (!joined) r.rooms = r.rooms.filter((x) => x !== room);
    if (r.pending.size > 0) return null;
    this.rejoin = null;
    return { type: "rejoined", rooms: r.rooms };
  }
  /** Fails the message an `error` refers to; `rate-limited` schedules a resend of every unacknowledged one. */
  onError(msg) {
    const code = typeof msg.code === "string" ? msg.code : "internal";
    if (code === "rate-limited") {
      this.outbox.markAllUnwritten();
      this.pausedUntil = Date.now() + this.s.rateLimitPauseMs;
      this.clearTimer("pause");
      this.timers.pause = setTimeout(() => {
        this.timers.pause = null;
        this.pausedUntil = null;
        this.flush();
      }, this.s.rateLimitPauseMs);
      return null;
    }
    const id = parseId(msg.ref);
    if (id === null) return null;
    const error = new SignalingError(code, typeof msg.message === "string" ? msg.message : code);
    let after = null;
    const entry = this.outbox.remove(id);
    if (entry) {
      const kind = entry.kind;
      if (kind.t === "join" && kind.rejoin) {
        this.roomList = this.roomList.filter((r) => r !== kind.room);
        after = this.rejoinProgress(kind.room, false);
      } else if (kind.t === "leave" && kind.room !== null && code === "not-in-room") {
        this.roomList = this.roomList.filter((r) => r !== kind.room);
      }
      this.persist();
      answer(entry, { err: error });
    } else {
      const i = this.awaitingRoomInfo.findIndex((w) => w.id === id);
      if (i >= 0) this.awaitingRoomInfo.splice(i, 1)[0].reply.reject(error);
    }
    this.flush();
    this.afterAck?.();
    return after;
  }
  // -- the session across page reloads ---------------------------------------
  /** Reads the session a previous page of this tab left (same URL, same user). */
  restore(userId) {
    let stored = null;
    try {
      const raw = this.storage?.getItem(this.storageKey);
      stored = raw ? JSON.parse(raw) : null;
    } catch {
      stored = null;
    }
    if (!stored || typeof stored !== "object") return;
    if (userId !== void 0 && stored.userId !== userId) return;
    if (userId === void 0 && typeof stored.userId === "string") this.identity.userId = stored.userId;
    if (typeof stored.sessionId === "string" && typeof stored.resumeToken === "string") {
      this.session = { id: stored.sessionId, resumeToken: stored.resumeToken };
      this.lastSeq = typeof stored.lastSeq === "number" ? stored.lastSeq : 0;
      this.roomList = Array.isArray(stored.rooms) ? stored.rooms.filter((r) => typeof r === "string") : [];
      this.restored = true;
    }
  }
  persist() {
    if (!this.storage) return;
    const value = { userId: this.userId ?? void 0 };
    if (this.session) {
      value.sessionId = this.session.id;
      value.resumeToken = this.session.resumeToken;
      value.lastSeq = this.lastSeq;
      value.rooms = this.roomList;
    }
    try {
      this.storage.setItem(this.storageKey, JSON.stringify(value));
    } catch {
    }
  }
};
function defaultStorage() {
  try {
    const s = globalThis.sessionStorage;
    return s ?? null;
  } catch {
    return null;
  }
}
var MAX_PENDING_CANDIDATES = 256;
var Peer = class {
  constructor(peerId, pc, polite) {
    this.peerId = peerId;
    this.pc = pc;
    this.polite = polite;
  }
  peerId;
  pc;
  polite;
  /** Sent with every description and candidate, so the other side can tell a new connection from an old one. */
  localId = randomId();
  remoteId = null;
  ignoreOffer = false;
  pendingCandidates = [];
  /** Negotiation steps run one at a time, in arrival order. */
  chain = Promise.resolve();
  closed = false;
  collisions = 0;
  ignoredOffers = 0;
  rollbacks = 0;
  iceRestarts = 0;
};
function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
}
var PerfectNegotiation = class {
  constructor(client, options) {
    this.client = client;
    this.options = options;
    const room = options.roomId;
    const mine = (m) => m.roomId === room;
    this.unsubscribe = [
      client.on("room-info", (info) => {
        if (mine(info)) this.onRoomInfo(info);
      }),
      client.on("user-joined", (m) => {
        if (!mine(m)) return;
        this.politeness.set(m.userId, m.polite);
        this.closePeer(m.userId);
        this.openPeer(m.userId, m.polite);
      }),
      client.on("user-left", (m) => {
        if (mine(m)) this.closePeer(m.userId);
      }),
      client.on("offer", (m) => {
        if (mine(m)) this.onSignal(m);
      }),
      client.on("answer", (m) => {
        if (mine(m)) this.onSignal(m);
      }),
      client.on("candidate", (m) => {
        if (mine(m)) this.onSignal(m);
      }),
      client.on("resumed", (m) => {
        if (!m.restored && options.restartIceOnResume !== false) this.restartIce();
      }),
      client.on("error", (m) => {
        if (m.code === "resume-failed") for (const id of [...this.peerMap.keys()]) this.closePeer(id);
      })
    ];
  }
  client;
  options;
  peerMap = /* @__PURE__ */ new Map();
  politeness = /* @__PURE__ */ new Map();
  iceServers;
  unsubscribe;
  closed = false;
  /** The connection to one peer. */
  get(peerId) {
    return this.peerMap.get(peerId)?.pc;
  }
  /** Every peer with its connection and negotiation counters. */
  peers() {
    return [...this.peerMap.values()];
  }
  peer(peerId) {
    return this.peerMap.get(peerId);
  }
  /** Restarts ICE on every connection (renegotiates with new ICE credentials). */
  restartIce() {
    for (const p of this.peerMap.values()) {
      p.iceRestarts++;
      p.pc.restartIce();
    }
  }
  /** Stops listening to the client and closes every connection. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const u of this.unsubscribe) u();
    for (const id of [...this.peerMap.keys()]) this.closePeer(id);
  }
  onRoomInfo(info) {
    this.iceServers = Array.isArray(info.iceServers) ? info.iceServers : void 0;
    const present = /* @__PURE__ */ new Set();
    for (const p of info.peers ?? []) {
      present.add(p.userId);
      this.politeness.set(p.userId, p.polite);
      if (!this.peerMap.has(p.userId)) this.openPeer(p.userId, p.polite);
    }
    for (const id of [...this.peerMap.keys()]) if (!present.has(id)) this.closePeer(id);
  }
  openPeer(peerId, polite) {
    if (this.closed) return null;
    const context = { roomId: this.options.roomId, polite };
    if (this.iceServers) context.iceServers = this.iceServers;
    let pc;
    try {
      pc = this.options.createPeerConnection(peerId, context);
    } catch (e) {
      this.fail(e, peerId);
      return null;
    }
    const peer = new Peer(peerId, pc, polite);
    this.peerMap.set(peerId, peer);
    pc.addEventListener("negotiationneeded", () => this.step(peer, () => this.makeOffer(peer)));
    pc.addEventListener("icecandidate", (ev) => {
      if (ev.candidate && !peer.closed) this.signal(peer, { type: "candidate", candidate: ev.candidate.toJSON() });
    });
    return peer;
  }
  closePeer(peerId) {
    const peer = this.peerMap.get(peerId);
    if (!peer) return;
    this.peerMap.delete(peerId);
    peer.closed = true;
    peer.pc.close();
    try {
      this.options.onPeerClosed?.(peerId, peer.pc);
    } catch (e) {
      report(e);
    }
  }
  signal(peer, fields) {
    this.client.sendJson({ ...fields, to: peer.peerId, roomId: this.options.roomId, pc: peer.localId }).catch((e) => {
      if (!peer.closed) this.fail(e, peer.peerId);
    });
  }
  fail(error, peerId) {
    if (this.options.onError) this.options.onError(error, peerId);
    else console.warn(`switchboard: negotiation with ${peerId} failed`, error);
  }
  /** Runs negotiation steps of one peer one at a time. */
  step(peer, fn) {
    peer.chain = peer.chain.then(() => peer.closed ? void 0 : fn()).catch((e) => {
      if (!peer.closed) this.fail(e, peer.peerId);
    });
  }
  async makeOffer(peer) {
    if (peer.pc.signalingState !== "stable") return;
    await peer.pc.setLocalDescription();
    const d = peer.pc.localDescription;
    if (d && !peer.closed) this.signal(peer, { type: "offer", sdp: { type: d.type, sdp: d.sdp } });
  }
  onSignal(m) {
    const from = m.from;
    if (typeof from !== "string") return;
    const remoteId = typeof m.pc === "string" ? m.pc : null;
    let peer = this.peerMap.get(from);
    if (m.type === "offer") {
      if (peer && remoteId !== null && peer.remoteId !== null && remoteId !== peer.remoteId) {
        this.closePeer(from);
        peer = void 0;
      }
      if (!peer) {
        const polite = this.politeness.get(from) ?? (this.client.userId ?? "") > from;
        peer = this.openPeer(from, polite) ?? void 0;
        if (!peer) return;
      }
    } else if (!peer || remoteId !== null && peer.remoteId !== null && remoteId !== peer.remoteId) {
      return;
    }
    if (remoteId !== null) peer.remoteId = remoteId;
    const p = peer;
    if (m.type === "candidate") this.step(p, () => this.onCandidate(p, m.candidate));
    else this.step(p, () => this.onDescription(p, m));
  }
  async onDescription(peer, m) {
    const pc = peer.pc;
    const description = typeof m.sdp === "string" ? { type: m.type, sdp: m.sdp } : m.sdp;
    if (description.type === "offer") {
      const collision = pc.signalingState !== "stable";
      peer.ignoreOffer = !peer.polite && collision;
      if (collision) peer.collisions++;
      if (peer.ignoreOffer) {
        peer.ignoredOffers++;
        return;
      }
      if (collision) {
        peer.rollbacks++;
        await pc.setLocalDescription({ type: "rollback" });
      }
      await pc.setRemoteDescription(description);
      await this.flushCandidates(peer);
      await pc.setLocalDescription();
      const d = pc.localDescription;
      if (d && !peer.closed) this.signal(peer, { type: "answer", sdp: { type: d.type, sdp: d.sdp } });
    } else if (description.type === "answer") {
      if (pc.signalingState !== "have-local-offer") return;
      await pc.setRemoteDescription(description);
      await this.flushCandidates(peer);
    }
  }
  async onCandidate(peer, candidate) {
    if (!candidate) return;
    if (!peer.pc.remoteDescription) {
      if (peer.pendingCandidates.length >= MAX_PENDING_CANDIDATES) peer.pendingCandidates.shift();
      peer.pendingCandidates.push(candidate);
      return;
    }
    try {
      await peer.pc.addIceCandidate(candidate);
    } catch (e) {
      if (!peer.ignoreOffer) throw e;
    }
  }
  async flushCandidates(peer) {
    const queued = peer.pendingCandidates.splice(0);
    for (const c of queued) {
      try {
        await peer.pc.addIceCandidate(c);
      } catch {
      }
    }
  }
};
export {
  PerfectNegotiation,
  SUBPROTOCOL_MSGPACK,
  SignalingClient,
  SignalingError,
  backoffCeiling
};
