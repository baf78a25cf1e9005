import { ValidationError, type Run, type WorkflowDefinition } from '@multiagents/contracts';
import type { Effect, OutboxEntry, Timer } from '@multiagents/core';
import { canonicalJson } from './canonical-json';

/** Where a run sorts in the indexes: by createdAt, then txId (the zset score and member). */
export interface RunIndexKey {
  readonly createdAt: number;
  readonly txId: string;
}

/**
 * Every value the stores write to or read from Redis goes through here, so the stored format is
 * defined in one place. Runs, effects and timers are JSON (their types are JSON data); an outbox
 * item is `<version>|<effect JSON>`, so the clear script can read the version without decoding
 * JSON; a definition is its canonical JSON, so equal content compares equal as a string in Lua.
 */
export const redisCodec = {
  encodeRun(run: Run): string {
    return JSON.stringify(run);
  },

  decodeRun(json: string): Run {
    return JSON.parse(json) as Run;
  },

  encodeOutboxItem(version: number, effect: Effect): string {
    return `${version}|${JSON.stringify(effect)}`;
  },

  decodeOutboxItem(item: string): OutboxEntry {
    const bar = item.indexOf('|');
    return { version: Number(item.slice(0, bar)), effect: JSON.parse(item.slice(bar + 1)) as Effect };
  },

  encodeTimer(timer: Timer): string {
    return JSON.stringify(timer);
  },

  decodeTimer(json: string): Timer {
    return JSON.parse(json) as Timer;
  },

  encodeDefinition(definition: WorkflowDefinition): string {
    return canonicalJson(definition);
  },

  decodeDefinition(json: string): WorkflowDefinition {
    return JSON.parse(json) as WorkflowDefinition;
  },

  /** What `<p>:{runs}:meta` holds for a run: `<version>|<state>|<ms>|<workflowId>` (id last: any text). */
  encodeRunMeta(version: number, state: string, atMs: number, workflowId: string): string {
    return `${version}|${state}|${atMs}|${workflowId}`;
  },

  /** The workflow id inside a run's meta value, if it is well formed. */
  workflowIdOfRunMeta(meta: string): string | undefined {
    let at = -1;
    for (let i = 0; i < 3; i += 1) {
      at = meta.indexOf('|', at + 1);
      if (at < 0) return undefined;
    }
    return meta.slice(at + 1);
  },

  /** An opaque list cursor: the index key of the last run of a page. */
  encodeCursor(key: RunIndexKey): string {
    return Buffer.from(JSON.stringify([key.createdAt, key.txId]), 'utf8').toString('base64url');
  },

  /** Throws `ValidationError` (INVALID_ARGUMENT) for anything `encodeCursor` did not produce. */
  decodeCursor(cursor: string): RunIndexKey {
    try {
      const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
      if (
        Array.isArray(parsed) &&
        parsed.length === 2 &&
        typeof parsed[0] === 'number' &&
        Number.isFinite(parsed[0]) &&
        typeof parsed[1] === 'string'
      ) {
        return { createdAt: parsed[0], txId: parsed[1] };
      }
    } catch {
      // Reported below with the same error as a well-formed JSON of the wrong shape.
    }
    throw new ValidationError('cursor', ['not a cursor returned by list()']);
  },
} as const;
