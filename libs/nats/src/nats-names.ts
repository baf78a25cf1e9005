import { createHash } from 'node:crypto';
import { ValidationError } from '@multiagents/contracts';
import { decodeTime, encodeTime, encodeToken } from './key-codec';

/** What a prefix may look like: the same rule as `MULTIAGENTS_PREFIX` (letters, digits, `_`, `-`). */
export const NATS_PREFIX_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * What a topic may look like: dot-separated tokens of letters, digits, `_`, `:` and `-` (worker
 * names such as `inventory.reserve` included). The topic becomes the tail of a NATS subject, so an
 * empty token, whitespace or the wildcards `*` and `>` could never be published to exactly.
 */
export const NATS_TOPIC_PATTERN = /^[A-Za-z0-9_:-]+(?:\.[A-Za-z0-9_:-]+)*$/;

/** Longest topic accepted (it is also part of a subject, and subjects travel in every message). */
export const MAX_TOPIC_LENGTH = 255;

/**
 * Longest consumer name built. JetStream stores a durable consumer in a directory named after it,
 * so names stay well below file-name limits; longer ones end in a hash (see {@link NatsNames}).
 */
export const MAX_CONSUMER_NAME_LENGTH = 200;

// Characters kept as they are in a name; everything else (`_` included) is escaped as `_xx` per
// UTF-8 byte. `_` therefore only ever starts an escape, which is what makes decoding unambiguous.
const NAME_SAFE = /^[A-Za-z0-9-]$/;
// Between topic and group: `_` followed by `_` never occurs inside an encoded part.
const NAME_SEPARATOR = '__';
// Marks a hashed (too long) name: `h` is not a hex digit, so no encoded part contains `_h`.
const HASH_MARKER = '_h';
const HASH_HEX_LENGTH = 32;

/**
 * Escapes a string into `[A-Za-z0-9_-]` deterministically and injectively: letters, digits and
 * `-` stay, every other character becomes `_` plus two hex digits per UTF-8 byte
 * (`inventory.reserve` → `inventory_2ereserve`). Stream and consumer names may not contain `.`,
 * `*`, `>`, whitespace or path separators; this keeps them readable and collision-free.
 */
export function encodeNamePart(value: string): string {
  let out = '';
  for (const char of value) {
    if (NAME_SAFE.test(char)) {
      out += char;
      continue;
    }
    for (const byte of Buffer.from(char, 'utf8')) out += `_${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** The inverse of {@link encodeNamePart} (for diagnostics and tests); throws on a malformed name. */
export function decodeNamePart(encoded: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i += 1) {
    const char = encoded.charAt(i);
    if (char !== '_') {
      if (!NAME_SAFE.test(char)) throw new ValidationError('encoded name', [`unexpected "${char}"`]);
      bytes.push(char.charCodeAt(0));
      continue;
    }
    const hex = encoded.slice(i + 1, i + 3);
    if (!/^[0-9a-f]{2}$/.test(hex)) throw new ValidationError('encoded name', [`bad escape at ${i}`]);
    bytes.push(parseInt(hex, 16));
    i += 2;
  }
  return Buffer.from(bytes).toString('utf8');
}

/** What a run's live-index key says (see {@link NatsNames.liveEntry}). */
export interface LiveEntryKey {
  readonly workflowToken: string;
  readonly createdAt: number;
  readonly txToken: string;
}

/** What a run's done-index key says (see {@link NatsNames.doneEntry}). */
export interface DoneEntryKey extends LiveEntryKey {
  readonly stateToken: string;
  readonly window: number;
}

/** JetStream's name for the stream behind a KV bucket. */
const kvStream = (bucket: string): string => `KV_${bucket}`;

/**
 * Every stream, subject, consumer, bucket and key the NATS backend uses, built in one place from
 * the prefix (no subject or key string is assembled anywhere else):
 *
 * | what | name |
 * |---|---|
 * | topic stream (limits retention) | `<prefix>_BUS`, subjects `<prefix>.>` |
 * | a topic's subject | `<prefix>.<topic>`: `multiagents.commands.inventory.reserve`, `multiagents.results`, `multiagents.events` |
 * | a group's durable pull consumer | `<encoded topic>__<encoded group>` in `<prefix>_BUS` |
 * | dead-letter stream | `<prefix>_DLQ`, subjects `<prefix>_dlq.>`; a topic's letters on `<prefix>_dlq.<topic>` |
 * | timer stream (work queue) | `<prefix>_TIMERS`, subject `<prefix>_timers`, one durable consumer `timers` |
 * | a broadcast channel (core NATS, in no stream) | `<prefix>_bc.<channel>` |
 * | runs bucket (KV) | `<prefix>-runs` (stream `KV_<prefix>-runs`) |
 * | a run's record (revision-checked) | `r.<txId>` |
 * | a run's write-once meta | `m.<txId>` |
 * | a live run in the index | `l.<workflowId>.<createdAt>.<txId>` |
 * | a finished run in the index | `d.<state>.<window>.<workflowId>.<createdAt>.<txId>` |
 * | a time window holding finished runs | `w.<window>` |
 * | definitions bucket (KV) | `<prefix>-definitions`: `v.<id>.<version>`, `l.<id>` (latest), `wm.<manager>` (worker registry) |
 * | timelines bucket (KV) | `<prefix>-timelines`: `t.<txId>.<version>` (a timeline entry), `m.<key>` (monitor marks) |
 * | memo bucket (KV) | `<prefix>-memo`: `k.<key>` (a memo record: an agent's answer by idempotency key) |
 *
 * Ids in keys go through {@link encodeToken}, times through {@link encodeTime} (fixed width, so
 * keys sort like the times). Consumer names use {@link encodeNamePart}, so distinct (topic, group)
 * pairs never share a consumer; a name longer than {@link MAX_CONSUMER_NAME_LENGTH} keeps a
 * readable head and ends in `_h` plus 128 bits of SHA-256 of the pair.
 *
 * The dead-letter and timer subjects live under their own roots because two streams may not have
 * overlapping subjects and the topic stream takes all of `<prefix>.>`. The prefixes that clash
 * (`x` with `x_dlq` or `x_timers`) are refused by the server at start, loudly.
 *
 * @example
 * const names = new NatsNames('multiagents');
 * names.topicSubject('commands.inventory.reserve'); // 'multiagents.commands.inventory.reserve'
 * names.runRecord('3f0c…');                         // 'r.3f0c…'
 */
export class NatsNames {
  /** The topic stream. */
  readonly stream: string;
  /** The subjects the topic stream captures. */
  readonly streamSubjects: readonly string[];
  /** The dead-letter stream. */
  readonly deadLetterStream: string;
  /** The subjects the dead-letter stream captures. */
  readonly deadLetterSubjects: readonly string[];
  /** The timer stream (a work queue of wake-ups). */
  readonly timerStream: string;
  /** The one subject of the timer stream. */
  readonly timerSubject: string;
  /** The timer stream's durable consumer, shared by every orchestrator. */
  readonly timerConsumer = 'timers';
  /** The KV bucket of runs: records, metas and the listing index. */
  readonly runsBucket: string;
  /** The stream behind {@link runsBucket}. */
  readonly runsStream: string;
  /** The KV bucket of workflow definitions. */
  readonly definitionsBucket: string;
  /** The stream behind {@link definitionsBucket}. */
  readonly definitionsStream: string;
  /** The KV bucket of run timelines and once-only marks (the event-monitor's; made on first use). */
  readonly timelinesBucket: string;
  /** The stream behind {@link timelinesBucket}. */
  readonly timelinesStream: string;
  /** The KV bucket of memo records (`backend.memo`; made on first use). */
  readonly memoBucket: string;
  /** The stream behind {@link memoBucket}. */
  readonly memoStream: string;
  private readonly deadLetterRoot: string;

  constructor(readonly prefix: string) {
    if (typeof prefix !== 'string' || !NATS_PREFIX_PATTERN.test(prefix)) {
      throw new ValidationError('prefix', [`"${String(prefix)}" must match ${NATS_PREFIX_PATTERN.source}`]);
    }
    this.stream = `${prefix}_BUS`;
    this.streamSubjects = [`${prefix}.>`];
    this.deadLetterStream = `${prefix}_DLQ`;
    this.deadLetterRoot = `${prefix}_dlq`;
    this.deadLetterSubjects = [`${this.deadLetterRoot}.>`];
    this.timerStream = `${prefix}_TIMERS`;
    this.timerSubject = `${prefix}_timers`;
    this.runsBucket = `${prefix}-runs`;
    this.runsStream = kvStream(this.runsBucket);
    this.definitionsBucket = `${prefix}-definitions`;
    this.definitionsStream = kvStream(this.definitionsBucket);
    this.timelinesBucket = `${prefix}-timelines`;
    this.timelinesStream = kvStream(this.timelinesBucket);
    this.memoBucket = `${prefix}-memo`;
    this.memoStream = kvStream(this.memoBucket);
  }

  // ---- the bus ------------------------------------------------------------------------------

  /** Throws a ValidationError unless `topic` can be carried by this bus. */
  assertTopic(topic: string): void {
    const problems = topicProblems(topic);
    if (problems.length > 0) throw new ValidationError('topic', problems);
  }

  /** The subject a topic's messages are published on. */
  topicSubject(topic: string): string {
    this.assertTopic(topic);
    return `${this.prefix}.${topic}`;
  }

  /** The core NATS subject of a broadcast channel (see EventBus.broadcast): no stream captures it. */
  broadcastSubject(channel: string): string {
    this.assertTopic(channel);
    return `${this.prefix}_bc.${channel}`;
  }

  /** The subject a topic's dead letters are kept on, in the dead-letter stream. */
  deadLetterSubject(topic: string): string {
    this.assertTopic(topic);
    return `${this.deadLetterRoot}.${topic}`;
  }

  /** The durable consumer of `group` on `topic`. */
  consumerName(topic: string, group: string): string {
    this.assertTopic(topic);
    if (typeof group !== 'string' || group.length === 0) {
      throw new ValidationError('group', ['must be a non-empty string']);
    }
    const name = `${encodeNamePart(topic)}${NAME_SEPARATOR}${encodeNamePart(group)}`;
    if (name.length <= MAX_CONSUMER_NAME_LENGTH) return name;
    const hash = createHash('sha256').update(topic).update('\0').update(group).digest('hex');
    // Cut the readable head before a partial escape or separator. The head then never ends in
    // `_`, so its marker `_h` follows a character other than `_`; in a plain name `_h` can only
    // be the separator's second `_` before a group starting with `h`, i.e. it follows `_`.
    const head = name
      .slice(0, MAX_CONSUMER_NAME_LENGTH - HASH_MARKER.length - HASH_HEX_LENGTH)
      .replace(/_+[0-9a-f]?$/, '');
    return `${head}${HASH_MARKER}${hash.slice(0, HASH_HEX_LENGTH)}`;
  }

  /**
   * The group of a consumer named by {@link consumerName}, for consumers created without a
   * description; the consumer's own name when it was hashed (too long to carry the group).
   */
  groupOfConsumer(consumer: string): string {
    const at = consumer.indexOf(NAME_SEPARATOR);
    if (at < 0 || consumer.includes(HASH_MARKER)) return consumer;
    try {
      return decodeNamePart(consumer.slice(at + NAME_SEPARATOR.length));
    } catch {
      return consumer;
    }
  }

  /**
   * The `Nats-Msg-Id` of an envelope: its id, so a republish (a command sent again, an outbox
   * recovered) inside the duplicate window is stored once. Envelope ids are unique across topics
   * (`<txId>:<step>:<attempt>` commands, `<txId>:v<n>` events, result ids); an id a header cannot
   * carry (control characters, over 256 characters) is replaced by its SHA-256.
   */
  publishId(envelopeId: string): string {
    return headerSafeId(envelopeId);
  }

  /**
   * The `Nats-Msg-Id` of a dead letter: one per (consumer, stream sequence), so a consumer that
   * crashed between writing the dead letter and terminating the message writes it once only.
   */
  deadLetterId(consumer: string, sequence: number): string {
    return `${consumer} ${sequence}`;
  }

  /** The `Nats-Msg-Id` of a replayed dead letter: replaying the same one twice publishes it once. */
  replayId(deadLetterSequence: number, deadAt: string): string {
    return `replay ${deadLetterSequence} ${deadAt}`;
  }

  /** The `Nats-Msg-Id` of a timer's wake-up: a timer scheduled again for the same time is one message. */
  timerMessageId(timerId: string, dueAt: number): string {
    return headerSafeId(`${timerId}@${dueAt}`);
  }

  // ---- KV ------------------------------------------------------------------------------------

  /** The subject of a key in a bucket (what a KV write publishes to). */
  kvSubject(bucket: string, key: string): string {
    return `$KV.${bucket}.${key}`;
  }

  /** The key of a subject of `bucket`, or undefined when the subject is not in it. */
  kvKey(bucket: string, subject: string): string | undefined {
    const root = `$KV.${bucket}.`;
    return subject.startsWith(root) ? subject.slice(root.length) : undefined;
  }

  /** A run's record: header, step records and pending outbox, written with compare-and-set. */
  runRecord(txId: string): string {
    return `r.${encodeToken(txId)}`;
  }

  /** A run's record, from an already encoded txId (as found in an index key). */
  runRecordByToken(txToken: string): string {
    return `r.${txToken}`;
  }

  /** A run's write-once part (ids, input, pinned version, trace headers). */
  runMeta(txId: string): string {
    return `m.${encodeToken(txId)}`;
  }

  /** The live-index entry of a run that is not finished. */
  liveEntry(workflowId: string, createdAt: number, txId: string): string {
    return `l.${encodeToken(workflowId)}.${encodeTime(createdAt)}.${encodeToken(txId)}`;
  }

  /** The filter of the live index; a workflow narrows it. */
  liveFilter(workflowId?: string): string {
    return workflowId === undefined ? 'l.>' : `l.${encodeToken(workflowId)}.>`;
  }

  /** Takes a live-index key apart, or undefined when it is not one. */
  parseLiveEntry(key: string): LiveEntryKey | undefined {
    const parts = key.split('.');
    if (parts.length !== 4 || parts[0] !== 'l') return undefined;
    const createdAt = decodeTime(parts[2] as string);
    if (createdAt === undefined) return undefined;
    return { workflowToken: parts[1] as string, createdAt, txToken: parts[3] as string };
  }

  /** The done-index entry of a finished run, in the time window of its creation. */
  doneEntry(state: string, window: number, workflowId: string, createdAt: number, txId: string): string {
    return [
      'd',
      encodeToken(state),
      encodeTime(window),
      encodeToken(workflowId),
      encodeTime(createdAt),
      encodeToken(txId),
    ].join('.');
  }

  /** The filter of one window of the done index; a state and a workflow narrow it. */
  doneFilter(window: number, state?: string, workflowId?: string): string {
    const stateToken = state === undefined ? '*' : encodeToken(state);
    const tail = workflowId === undefined ? '>' : `${encodeToken(workflowId)}.>`;
    return `d.${stateToken}.${encodeTime(window)}.${tail}`;
  }

  /** Takes a done-index key apart, or undefined when it is not one. */
  parseDoneEntry(key: string): DoneEntryKey | undefined {
    const parts = key.split('.');
    if (parts.length !== 6 || parts[0] !== 'd') return undefined;
    const window = decodeTime(parts[2] as string);
    const createdAt = decodeTime(parts[4] as string);
    if (window === undefined || createdAt === undefined) return undefined;
    return {
      stateToken: parts[1] as string,
      window,
      workflowToken: parts[3] as string,
      createdAt,
      txToken: parts[5] as string,
    };
  }

  /** The directory entry of a time window (start, ms) that holds finished runs. */
  windowEntry(window: number): string {
    return `w.${encodeTime(window)}`;
  }

  /** The window (start, ms) of a directory entry, or undefined. */
  parseWindowEntry(key: string): number | undefined {
    return key.startsWith('w.') ? decodeTime(key.slice(2)) : undefined;
  }

  /** One stored version of a definition. */
  definition(id: string, version: number): string {
    return `v.${encodeToken(id)}.${encodeTime(version)}`;
  }

  /** The latest version of a definition (a copy of it). */
  latestDefinition(id: string): string {
    return `l.${encodeToken(id)}`;
  }

  /** A worker-manager replica's announcement (definitions bucket). */
  workerManager(managerId: string): string {
    return `wm.${encodeToken(managerId)}`;
  }

  /** A run's timeline as one key holding every entry (timelines bucket): earlier versions' layout, only read. */
  timeline(txId: string): string {
    return `t.${encodeToken(txId)}`;
  }

  /** One entry of a run's timeline (timelines bucket): `t.<txId>.<version>`. */
  timelineEntry(txId: string, version: number): string {
    return `${this.timeline(txId)}.${version}`;
  }

  /** Every entry key of a run's timeline (a KV key filter). */
  timelineEntries(txId: string): string {
    return `${this.timeline(txId)}.*`;
  }

  /** An event-monitor once-only mark (timelines bucket). */
  monitorMark(key: string): string {
    return `m.${encodeToken(key)}`;
  }

  /** A memo record (memo bucket). */
  memoRecord(key: string): string {
    return `k.${encodeToken(key)}`;
  }

  /** The filter of every replica's announcement. */
  readonly workerManagerFilter = 'wm.>';
}

/** The start of the window of `width` ms that holds `time`. */
export function windowStart(time: number, width: number): number {
  return Math.floor(time / width) * width;
}

/** Printable ASCII without spaces, at most 256 characters: what a header value carries as is. */
const HEADER_SAFE_ID = /^[\x21-\x7e]{1,256}$/;

function headerSafeId(id: string): string {
  return HEADER_SAFE_ID.test(id) ? id : `sha256:${createHash('sha256').update(id).digest('hex')}`;
}

function topicProblems(topic: string): string[] {
  if (typeof topic !== 'string' || topic.length === 0) return ['must be a non-empty string'];
  const problems: string[] = [];
  if (topic.length > MAX_TOPIC_LENGTH) problems.push(`must be at most ${MAX_TOPIC_LENGTH} characters`);
  if (!NATS_TOPIC_PATTERN.test(topic)) {
    problems.push(`"${topic}" must be dot-separated non-empty tokens of [A-Za-z0-9_:-]`);
  }
  return problems;
}
