/**
 * The protobuf wire format of `multiagents.v1.Envelope` (proto/multiagents/v1/envelope.proto),
 * written and read by hand for the bus's hot path: every message of every process goes through
 * here. The generated codec writes into a growing chunk list, builds each string it reads from an
 * array of char codes (or a `TextDecoder`) and each `int64` through a BigInt; this one measures the
 * message, allocates its bytes once, writes its strings in one `Buffer.write`, and reads strings
 * straight from the buffer. Bytes are
 * identical to the generated encoder's, and the generated decoder reads the same message from them
 * (envelope-wire.spec.ts checks both on random envelopes).
 *
 * Reading is proto3's: fields in any order, a repeated scalar's last value wins, map entries
 * merge, unknown fields of wire types 0, 1, 2 and 5 are skipped. Anything else throws an `Error`
 * (the caller turns it into a poison message): data cut short, a varint longer than ten bytes, a
 * field number 0, groups, wire types 6 and 7, a time outside the safe integers. The generated
 * decoder stopped without a word at a field number 0 or an end-group tag; here they are errors.
 */

/** The fields of an Envelope on the wire. */
export interface WireEnvelope {
  id: string;
  type: string;
  txId: string;
  workflowId: string;
  step?: string;
  attempt?: number;
  timeMs: number;
  headers: Record<string, string>;
  payload: Uint8Array;
}

/** What {@link encodeWireEnvelope} takes: the payload may be text, written as its UTF-8. */
export type WireEnvelopeInput = Omit<WireEnvelope, 'payload'> & { payload: Uint8Array | string };

// Tags: field number << 3 | wire type (0 varint, 1 fixed 64, 2 length-delimited, 5 fixed 32).
const ID = 0x0a;
const TYPE = 0x12;
const TX_ID = 0x1a;
const WORKFLOW_ID = 0x22;
const STEP = 0x2a;
const ATTEMPT = 0x30;
const TIME_MS = 0x38;
const HEADER = 0x42;
const PAYLOAD = 0x4a;
const ENTRY_KEY = 0x0a;
const ENTRY_VALUE = 0x12;

const TWO_POW_32 = 0x1_0000_0000;
const MAX_UINT32 = 0xffff_ffff;
const EMPTY: Uint8Array = new Uint8Array(0);

function varintSize(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x20_0000) return 3;
  if (value < 0x1000_0000) return 4;
  return 5;
}

/** Bytes of an int64 varint; a negative value takes ten (two's complement). */
function int64Size(value: number): number {
  if (value < 0) return 10;
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    size += 1;
  }
  return size;
}

function fieldSize(length: number): number {
  return 1 + varintSize(length) + length;
}

/**
 * Writes into one buffer of the message's exact size. Strings are appended to a pending text, and
 * so are a field's tag and length when both are below 0x80 (such a byte is its own UTF-8); the
 * text is written in one call before the next binary part: one `Buffer.write` for most of a
 * message instead of one per string.
 */
class Writer {
  pos = 0;
  private pending = '';
  constructor(readonly buf: Buffer) {}

  /** A tag and a varint: a length-delimited field's length, or a varint field's value. */
  head(tag: number, value: number): void {
    if (value < 0x80) {
      this.pending += String.fromCharCode(tag, value);
      return;
    }
    this.byte(tag);
    this.varint(value);
  }

  string(tag: number, value: string, length: number): void {
    this.head(tag, length);
    this.text(value);
  }

  /** Text whose tag and length are written already. */
  text(value: string): void {
    this.pending += value;
  }

  byte(value: number): void {
    this.flush();
    this.buf[this.pos++] = value;
  }

  varint(value: number): void {
    this.flush();
    const buf = this.buf;
    while (value > 0x7f) {
      buf[this.pos++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    buf[this.pos++] = value;
  }

  int64(value: number): void {
    this.flush();
    if (value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
      while (value > 0x7f) {
        this.buf[this.pos++] = (value % 0x80) | 0x80;
        value = Math.floor(value / 0x80);
      }
      this.buf[this.pos++] = value;
      return;
    }
    let bits = BigInt.asUintN(64, BigInt(value));
    while (bits > 0x7fn) {
      this.buf[this.pos++] = Number(bits & 0x7fn) | 0x80;
      bits >>= 7n;
    }
    this.buf[this.pos++] = Number(bits);
  }

  bytes(value: Uint8Array): void {
    this.flush();
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  flush(): void {
    if (this.pending === '') return;
    this.pos += this.buf.write(this.pending, this.pos, 'utf8');
    this.pending = '';
  }
}

/**
 * The envelope's bytes, in a Buffer from Node's pool (as any small `Buffer.allocUnsafe`: the bus
 * adapters copy it into their own writes). Throws when `attempt` is not a uint32 or `timeMs` not
 * an integer that an int64 holds (the generated encoder refused the same).
 */
export function encodeWireEnvelope(message: WireEnvelopeInput): Buffer {
  const { id, type, txId, workflowId, step, attempt, timeMs, headers, payload } = message;
  if (attempt !== undefined && !(Number.isInteger(attempt) && attempt >= 0 && attempt <= MAX_UINT32)) {
    throw new Error(`invalid uint32: ${attempt}`);
  }
  if (!Number.isInteger(timeMs) || timeMs < -(2 ** 63) || timeMs >= 2 ** 63) {
    throw new Error(`invalid int64: ${timeMs}`);
  }
  const idLength = Buffer.byteLength(id);
  const typeLength = Buffer.byteLength(type);
  const txIdLength = Buffer.byteLength(txId);
  const workflowIdLength = Buffer.byteLength(workflowId);
  const stepLength = step === undefined ? 0 : Buffer.byteLength(step);
  let size = 0;
  if (idLength > 0) size += fieldSize(idLength);
  if (typeLength > 0) size += fieldSize(typeLength);
  if (txIdLength > 0) size += fieldSize(txIdLength);
  if (workflowIdLength > 0) size += fieldSize(workflowIdLength);
  if (step !== undefined) size += fieldSize(stepLength);
  if (attempt !== undefined) size += 1 + varintSize(attempt);
  if (timeMs !== 0) size += 1 + int64Size(timeMs);
  // A map entry leaves out an empty key or value, as the generated encoder does.
  const entries: number[] = [];
  for (const key in headers) {
    if (!Object.hasOwn(headers, key)) continue;
    const keyLength = Buffer.byteLength(key);
    const valueLength = Buffer.byteLength(headers[key] as string);
    const entryLength =
      (keyLength > 0 ? fieldSize(keyLength) : 0) + (valueLength > 0 ? fieldSize(valueLength) : 0);
    entries.push(keyLength, valueLength, entryLength);
    size += fieldSize(entryLength);
  }
  const payloadLength = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (payloadLength > 0) size += fieldSize(payloadLength);

  const out = new Writer(Buffer.allocUnsafe(size));
  if (idLength > 0) out.string(ID, id, idLength);
  if (typeLength > 0) out.string(TYPE, type, typeLength);
  if (txIdLength > 0) out.string(TX_ID, txId, txIdLength);
  if (workflowIdLength > 0) out.string(WORKFLOW_ID, workflowId, workflowIdLength);
  if (step !== undefined) out.string(STEP, step, stepLength);
  if (attempt !== undefined) out.head(ATTEMPT, attempt);
  if (timeMs !== 0) {
    out.byte(TIME_MS);
    out.int64(timeMs);
  }
  let i = 0;
  for (const key in headers) {
    if (!Object.hasOwn(headers, key)) continue;
    const keyLength = entries[i++] as number;
    const valueLength = entries[i++] as number;
    const entryLength = entries[i++] as number;
    out.head(HEADER, entryLength);
    if (keyLength > 0) out.string(ENTRY_KEY, key, keyLength);
    if (valueLength > 0) out.string(ENTRY_VALUE, headers[key] as string, valueLength);
  }
  if (payloadLength > 0) {
    out.head(PAYLOAD, payloadLength);
    if (typeof payload === 'string') out.text(payload);
    else out.bytes(payload);
  }
  out.flush();
  if (out.pos !== size) throw new Error(`envelope encoder wrote ${out.pos} bytes, measured ${size}`);
  return out.buf;
}

/** Reads one buffer; every read checks its bounds. */
class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  /** A varint of up to ten bytes, as a uint32 (higher bits dropped, as protobuf's uint32 does). */
  uint32(end: number): number {
    const buf = this.buf;
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= end) throw new Error('premature end of data');
      const byte = buf[this.pos++] as number;
      if (shift < 32) result |= (byte & 0x7f) << shift;
      if (byte < 0x80) return result >>> 0;
    }
    throw new Error('invalid varint');
  }

  /** An int64 varint as a number; throws outside the safe integers. */
  int64(end: number): number {
    const buf = this.buf;
    let low = 0;
    let high = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= end) throw new Error('premature end of data');
      const byte = buf[this.pos++] as number;
      const bits = byte & 0x7f;
      if (shift < 28) low |= bits << shift;
      else if (shift === 28) {
        low |= bits << 28;
        high |= bits >>> 4;
      } else high |= bits << (shift - 32);
      if (byte < 0x80) {
        const value =
          high >= 0 && high < 0x20_0000
            ? high * TWO_POW_32 + (low >>> 0)
            : Number(BigInt.asIntN(64, (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0)));
        if (!Number.isSafeInteger(value)) throw new Error(`time ${value} is not a safe integer`);
        return value;
      }
    }
    throw new Error('invalid varint');
  }

  /** Reads a length-delimited field's length; returns where its bytes (from `pos` on) end. */
  delimited(end: number): number {
    const length = this.uint32(end);
    const fieldEnd = this.pos + length;
    if (fieldEnd > end) throw new Error('premature end of data');
    return fieldEnd;
  }

  string(end: number): string {
    const fieldEnd = this.delimited(end);
    const start = this.pos;
    this.pos = fieldEnd;
    return this.buf.toString('utf8', start, fieldEnd);
  }

  skip(wireType: number, end: number): void {
    if (wireType === 0) this.uint32(end);
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.pos = this.delimited(end);
    else if (wireType === 5) this.pos += 4;
    else throw new Error(`wire type ${wireType} is not read here`);
    if (this.pos > end) throw new Error('premature end of data');
  }

  /** The next tag; field number 0 is not a field. */
  tag(end: number): number {
    const tag = this.uint32(end);
    if (tag >>> 3 === 0) throw new Error(`illegal tag ${tag}`);
    return tag;
  }
}

/** The envelope in `bytes`; the payload is a view of them. Throws on what is not one. */
export function decodeWireEnvelope(bytes: Uint8Array): WireEnvelope {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = buf.length;
  const reader = new Reader(buf);
  const message: WireEnvelope = {
    id: '',
    type: '',
    txId: '',
    workflowId: '',
    step: undefined,
    attempt: undefined,
    timeMs: 0,
    headers: {},
    payload: EMPTY,
  };
  while (reader.pos < end) {
    const tag = reader.tag(end);
    switch (tag) {
      case ID:
        message.id = reader.string(end);
        break;
      case TYPE:
        message.type = reader.string(end);
        break;
      case TX_ID:
        message.txId = reader.string(end);
        break;
      case WORKFLOW_ID:
        message.workflowId = reader.string(end);
        break;
      case STEP:
        message.step = reader.string(end);
        break;
      case ATTEMPT:
        message.attempt = reader.uint32(end);
        break;
      case TIME_MS:
        message.timeMs = reader.int64(end);
        break;
      case HEADER:
        readHeader(reader, reader.delimited(end), message.headers);
        break;
      case PAYLOAD: {
        const fieldEnd = reader.delimited(end);
        message.payload = buf.subarray(reader.pos, fieldEnd);
        reader.pos = fieldEnd;
        break;
      }
      default:
        reader.skip(tag & 7, end);
    }
  }
  return message;
}

function readHeader(reader: Reader, end: number, headers: Record<string, string>): void {
  let key = '';
  let value = '';
  while (reader.pos < end) {
    const tag = reader.tag(end);
    if (tag === ENTRY_KEY) key = reader.string(end);
    else if (tag === ENTRY_VALUE) value = reader.string(end);
    else reader.skip(tag & 7, end);
  }
  headers[key] = value;
}
