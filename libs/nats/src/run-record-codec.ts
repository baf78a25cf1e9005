import { ValidationError, type Run, type RunState, type StepRecord } from '@multiagents/contracts';
import { decodeRunRecord, encodeRunHeader, encodeRunMeta, encodeStepRecord } from '@multiagents/core';

/** A live timer of a run: `[timerId, dueAt, version]`, the version of the transition that scheduled it. */
export type LiveTimer = readonly [timerId: string, dueAt: number, version: number];

/** A run record as the runs bucket holds it under `r.<txId>`, taken apart. */
export interface DecodedRunRecord {
  /** Committed transitions so far (1 once created). */
  readonly version: number;
  readonly state: RunState;
  /** Fixed at create: the index keys are built from these. */
  readonly createdAt: number;
  readonly workflowId: string;
  /** The pending outbox: the lifecycle event this write published, as encoded on the bus. */
  readonly event: Uint8Array | undefined;
  /** That event's envelope id (its message id on the bus). */
  readonly eventId: string | undefined;
  /**
   * The run's live timers (scheduled and not cancelled since): what a reader publishes the
   * wake-up of again when one is overdue (its writer died before publishing it, or deferred it).
   */
  readonly timers: readonly LiveTimer[];
  /** The meta (write-once part), when the record still carries it (see NatsRunStore). */
  readonly meta: string | undefined;
  readonly header: string;
  /** Step name → encoded step record. */
  readonly steps: Readonly<Record<string, string>>;
}

/** What a write puts in a record besides the run. */
export interface RecordExtras {
  readonly version: number;
  readonly event: { readonly id: string; readonly data: Uint8Array } | undefined;
  readonly timers: readonly LiveTimer[];
  /** Carry the meta in the record (until the meta key is known to exist). */
  readonly withMeta: boolean;
}

const EMPTY = new Uint8Array(0);

interface RecordInfo {
  readonly v: number;
  readonly s: RunState;
  readonly c: number;
  readonly w: string;
  readonly e?: string;
  readonly t?: LiveTimer[];
}

/** The first byte of every record: the layout below (a later layout gets another value). */
const FORMAT = 1;
/**
 * Step records the engine did not replace encode the same: each one's two parts (its name, its
 * record JSON) are kept framed as a record lays them out, by object identity, and copied into
 * every later record of the run instead of being encoded again.
 */
const framedSteps = new WeakMap<StepRecord, { readonly name: string; readonly bytes: Buffer }>();

function framedStep(name: string, record: StepRecord): Buffer {
  const cached = framedSteps.get(record);
  if (cached !== undefined && cached.name === name) return cached.bytes;
  // Its own memory (not a slice of Node's shared pool): it is kept as long as the record is.
  const bytes = frame([Buffer.from(name), Buffer.from(encodeStepRecord(record))], 0, [], (size) =>
    Buffer.allocUnsafeSlow(size),
  );
  framedSteps.set(record, { name, bytes });
  return bytes;
}

/** `parts` length-prefixed (u32 big-endian), after `offset` bytes left for the caller. */
function frame(
  parts: readonly Uint8Array[],
  offset: number,
  tail: readonly Buffer[] = [],
  alloc: (size: number) => Buffer = (size) => Buffer.allocUnsafe(size),
): Buffer {
  let size = offset;
  for (const part of parts) size += 4 + part.length;
  for (const framed of tail) size += framed.length;
  const out = alloc(size);
  let at = offset;
  for (const part of parts) {
    out.writeUInt32BE(part.length, at);
    out.set(part, at + 4);
    at += 4 + part.length;
  }
  for (const framed of tail) {
    out.set(framed, at);
    at += framed.length;
  }
  return out;
}

/**
 * Encodes a run record: a format byte, then length-prefixed parts (u32 big-endian length, bytes):
 *
 * ```
 * 0x01
 * info    {"v":<version>,"s":"<state>","c":<createdAt>,"w":"<workflowId>","e":"<event id>","t":[[<timerId>,<dueAt>,<version>],…]}
 * event   the pending lifecycle event as published on the bus (protobuf), or empty
 * meta    the meta JSON while the record carries it, or empty
 * header  the header JSON
 * then per step: its name, its record JSON
 * ```
 *
 * The JSON parts are core's `encodeRunMeta`/`encodeRunHeader`/`encodeStepRecord` strings, so the
 * run decodes through core's `decodeRunRecord` (the context is rebuilt, never stored). The whole
 * record is one KV value: one revision-checked write replaces all of it.
 */
export function encodeRecord(run: Run, extras: RecordExtras): Uint8Array {
  const info: RecordInfo = {
    v: extras.version,
    s: run.state,
    c: run.createdAt,
    w: run.workflowId,
    ...(extras.event === undefined ? {} : { e: extras.event.id }),
    ...(extras.timers.length > 0
      ? { t: extras.timers.map(([id, dueAt, version]) => [id, dueAt, version] as const) }
      : {}),
  };
  const steps: Buffer[] = [];
  for (const [name, record] of Object.entries(run.steps)) steps.push(framedStep(name, record));
  const out = frame(
    [
      Buffer.from(JSON.stringify(info)),
      extras.event?.data ?? EMPTY,
      extras.withMeta ? Buffer.from(encodeRunMeta(run)) : EMPTY,
      Buffer.from(encodeRunHeader(run)),
    ],
    1,
    steps,
  );
  out[0] = FORMAT;
  return out;
}

/** Takes a record apart (the run itself is decoded by {@link decodeRun}); throws on bytes no store wrote. */
export function decodeRecord(data: Uint8Array): DecodedRunRecord {
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buffer.length < 1 || buffer[0] !== FORMAT) throw corrupt('unknown format');
  const parts: Buffer[] = [];
  for (let at = 1; at < buffer.length;) {
    if (at + 4 > buffer.length) throw corrupt('truncated');
    const length = buffer.readUInt32BE(at);
    if (at + 4 + length > buffer.length) throw corrupt('truncated');
    parts.push(buffer.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (parts.length < 4 || parts.length % 2 !== 0) throw corrupt('wrong number of parts');
  const [infoPart, eventPart, metaPart, headerPart] = parts as [Buffer, Buffer, Buffer, Buffer];
  const info = JSON.parse(infoPart.toString('utf8')) as Partial<RecordInfo>;
  if (
    typeof info.v !== 'number' ||
    typeof info.s !== 'string' ||
    typeof info.c !== 'number' ||
    typeof info.w !== 'string'
  ) {
    throw corrupt('bad info');
  }
  const steps: Record<string, string> = {};
  for (let i = 4; i < parts.length; i += 2) {
    steps[(parts[i] as Buffer).toString('utf8')] = (parts[i + 1] as Buffer).toString('utf8');
  }
  return {
    version: info.v,
    state: info.s,
    createdAt: info.c,
    workflowId: info.w,
    // A copy: the caller may keep it after the read buffer is reused.
    event: eventPart.length === 0 ? undefined : new Uint8Array(eventPart),
    eventId: typeof info.e === 'string' ? info.e : undefined,
    timers: Array.isArray(info.t) ? info.t : [],
    meta: metaPart.length === 0 ? undefined : metaPart.toString('utf8'),
    header: headerPart.toString('utf8'),
    steps,
  };
}

/** The run a record and its meta describe, with its context rebuilt. */
export function decodeRun(record: DecodedRunRecord, meta: string): Run {
  return decodeRunRecord({ meta, header: record.header, steps: record.steps });
}

function corrupt(why: string): ValidationError {
  return new ValidationError('run record', [`not a record this store wrote: ${why}`]);
}
