import type { Envelope } from '@multiagents/contracts';

/**
 * One message of a topic: the deep-frozen envelope (the in-process default) or protobuf bytes
 * (signed envelopes, raw test injections).
 */
export interface LogEntry {
  /** Position in the topic, from 1, never reused. */
  readonly seq: number;
  /** The message id handed to consumers (the sequence as a string, like a stream entry id). */
  readonly id: string;
  readonly data: Uint8Array | Envelope;
  /**
   * The one group a replayed dead letter is for (the group that dead-lettered it); the other
   * groups pass over the entry. Undefined for every published message.
   */
  readonly group: string | undefined;
}

/**
 * The retained messages of one topic, addressed by sequence number: O(1) append and lookup,
 * amortised O(1) trimming from the front (an array plus a head index, compacted once half of it
 * is trimmed, instead of `shift` on a large array).
 */
export class TopicLog {
  private entries: (LogEntry | undefined)[] = [];
  private head = 0;
  private first = 1;
  private next = 1;

  /** Sequence of the oldest retained entry (equals {@link nextSeq} when empty). */
  get firstSeq(): number {
    return this.first;
  }

  /** Sequence the next appended entry gets. */
  get nextSeq(): number {
    return this.next;
  }

  /** Entries retained. */
  get size(): number {
    return this.next - this.first;
  }

  /** Appends `data`, which the log then owns (callers pass a private copy), for `group` only if given. */
  append(data: Uint8Array | Envelope, group?: string): LogEntry {
    const seq = this.next;
    this.next += 1;
    const entry: LogEntry = { seq, id: String(seq), data, group };
    this.entries.push(entry);
    return entry;
  }

  /** The entry at `seq`, if still retained. */
  at(seq: number): LogEntry | undefined {
    if (seq < this.first || seq >= this.next) return undefined;
    return this.entries[this.head + (seq - this.first)];
  }

  /** Drops every entry before `seq`; returns how many were dropped. */
  trimBefore(seq: number): number {
    const count = Math.min(seq, this.next) - this.first;
    if (count <= 0) return 0;
    for (let i = 0; i < count; i += 1) this.entries[this.head + i] = undefined;
    this.head += count;
    this.first += count;
    if (this.head === this.entries.length) {
      this.entries = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    return count;
  }
}
