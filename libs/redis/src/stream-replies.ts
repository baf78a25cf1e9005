/** One stream entry as the subscription handles it. */
export interface ReceivedEntry {
  /** The stream it was read from (XREADGROUP replies name it; script replies leave it ''). */
  readonly stream: string;
  readonly id: string;
  /** 1 on first delivery. */
  readonly deliveryCount: number;
  /** The `d` field's bytes; undefined when the entry has none (written by something else). */
  readonly data: Buffer | undefined;
  /**
   * The `group` field: only a replayed dead letter has one, naming the one group it is for (see
   * `replay.lua`); undefined for every published message.
   */
  readonly group: Buffer | undefined;
}

/** The field of a replayed dead letter's entry that names the one group it is for. */
export const REPLAY_GROUP_FIELD = 'group';

/** The value of `field` in a flat `[field, value, …]` list, if present. */
export function fieldValue(fields: unknown, field: string): Buffer | undefined {
  if (!Array.isArray(fields)) return undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name: unknown = fields[i];
    const value: unknown = fields[i + 1];
    if (Buffer.isBuffer(name) && name.toString() === field && Buffer.isBuffer(value)) return value;
  }
  return undefined;
}

/** A bulk reply (Buffer or string) as a string. */
export function bulkToString(value: unknown): string {
  if (Buffer.isBuffer(value)) return value.toString();
  if (typeof value === 'string') return value;
  throw new Error(`unexpected Redis reply: ${typeof value}`);
}

/**
 * The entries of an XREADGROUP reply, each a first delivery: RESP2 shape `[[key, entries], …]`,
 * or RESP3's map flattened by ioredis' legacy reply mapping (`[key, entries, …]`), or null.
 * Entries without fields (deleted since) are skipped.
 */
export function parseReadGroupReply(reply: unknown): ReceivedEntry[] {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const streams: Array<[string, unknown]> = [];
  const items = reply as unknown[];
  if (Array.isArray(items[0])) {
    for (const stream of items) if (Array.isArray(stream)) streams.push([bulkToString(stream[0]), stream[1]]);
  } else {
    for (let i = 0; i + 1 < items.length; i += 2) streams.push([bulkToString(items[i]), items[i + 1]]);
  }
  const out: ReceivedEntry[] = [];
  for (const [stream, entries] of streams) {
    if (!Array.isArray(entries)) continue;
    for (const entry of entries as unknown[]) {
      // An entry deleted (XDEL, trimmed) after it was delivered comes back without fields.
      if (!Array.isArray(entry) || entry[1] === null || entry[1] === undefined) continue;
      const fields: unknown = entry[1];
      out.push({
        stream,
        id: bulkToString(entry[0]),
        deliveryCount: 1,
        data: fieldValue(fields, 'd'),
        group: replayGroup(fields),
      });
    }
  }
  return out;
}

/**
 * The `group` field of an entry's flat field list, if it has one. A published entry has only
 * `d`: its two items are all this looks at, so the common case costs one length check.
 */
export function replayGroup(fields: unknown): Buffer | undefined {
  return Array.isArray(fields) && fields.length > 2 ? fieldValue(fields, REPLAY_GROUP_FIELD) : undefined;
}

/** A flat `[id, deliveryCount, data|nil, group|nil, …]` reply of `claim.lua` or `redeliver.lua`. */
export function parseEntryQuads(flat: unknown): ReceivedEntry[] {
  if (!Array.isArray(flat)) return [];
  const out: ReceivedEntry[] = [];
  for (let i = 0; i + 3 < flat.length; i += 4) {
    const data: unknown = flat[i + 2];
    const group: unknown = flat[i + 3];
    out.push({
      stream: '',
      id: bulkToString(flat[i]),
      deliveryCount: Number(flat[i + 1]),
      data: Buffer.isBuffer(data) ? data : undefined,
      group: Buffer.isBuffer(group) ? group : undefined,
    });
  }
  return out;
}

/**
 * Orders two stream entry ids (`<ms>-<seq>`, as Redis writes them: decimal, no leading zeros)
 * without parsing them: the longer number is the larger, numbers of one length compare as text.
 * Negative when `a` comes first, 0 when equal.
 */
export function compareStreamIds(a: string, b: string): number {
  const aDash = a.indexOf('-');
  const bDash = b.indexOf('-');
  if (aDash !== bDash) return aDash - bDash;
  const aMs = a.slice(0, aDash);
  const bMs = b.slice(0, bDash);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  const aSeqLength = a.length - aDash;
  const bSeqLength = b.length - bDash;
  if (aSeqLength !== bSeqLength) return aSeqLength - bSeqLength;
  return a === b ? 0 : a < b ? -1 : 1;
}
