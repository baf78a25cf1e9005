import { createHash } from 'node:crypto';
import { ValidationError } from '@multiagents/contracts';

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

/**
 * Every stream name, subject and consumer name the NATS bus uses, built in one place from the
 * prefix (no subject string is assembled anywhere else):
 *
 * | what | name |
 * |---|---|
 * | topic stream | `<prefix>_BUS`, subjects `<prefix>.>` |
 * | a topic's subject | `<prefix>.<topic>`: `multiagents.commands.inventory.reserve`, `multiagents.results`, `multiagents.events` |
 * | dead-letter stream | `<prefix>_DLQ`, subjects `<prefix>_dlq.>` |
 * | a topic's dead letters | `<prefix>_dlq.<topic>` |
 * | a group's durable consumer (in the topic stream) | `<encoded topic>__<encoded group>` |
 *
 * Consumer names use {@link encodeNamePart}, so distinct (topic, group) pairs never share a
 * consumer; a name longer than {@link MAX_CONSUMER_NAME_LENGTH} keeps a readable head and ends in
 * `_h` plus 128 bits of SHA-256 of the pair.
 *
 * The dead-letter subjects live under a second root because two streams may not have overlapping
 * subjects and the topic stream takes all of `<prefix>.>`. The one pair of prefixes that clash is
 * `x` and `x_dlq`: the server refuses the second stream (overlapping subjects) at start, loudly.
 *
 * @example
 * const names = new NatsNames('multiagents');
 * names.topicSubject('commands.inventory.reserve'); // 'multiagents.commands.inventory.reserve'
 * names.consumerName('commands.inventory.reserve', 'workers'); // 'commands_2einventory_2ereserve__workers'
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
  }

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
   * The `Nats-Msg-Id` of an envelope published to a topic. JetStream de-duplicates per stream and
   * one stream carries every topic, so the id is qualified by the topic (a topic has no spaces,
   * so `<topic> <id>` is unambiguous): the same envelope id on two topics is two messages.
   */
  publishId(topic: string, envelopeId: string): string {
    return `${topic} ${envelopeId}`;
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
