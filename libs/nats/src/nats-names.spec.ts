import { ErrorCode } from '@multiagents/contracts';
import fc from 'fast-check';
import {
  MAX_CONSUMER_NAME_LENGTH,
  NatsNames,
  decodeNamePart,
  encodeNamePart,
  windowStart,
} from './nats-names';

// What JetStream refuses in stream and consumer names (server: `.`, `*`, `>`, whitespace, path separators).
const INVALID_NAME_CHARS = /[.*>\s/\\]/;

describe('NatsNames', () => {
  const names = new NatsNames('multiagents');

  it('maps topics to subjects under the prefix, and dead letters under a second root', () => {
    expect(names.stream).toBe('multiagents_BUS');
    expect(names.streamSubjects).toEqual(['multiagents.>']);
    expect(names.deadLetterStream).toBe('multiagents_DLQ');
    expect(names.deadLetterSubjects).toEqual(['multiagents_dlq.>']);
    expect(names.topicSubject('commands.inventory.reserve')).toBe('multiagents.commands.inventory.reserve');
    expect(names.topicSubject('results')).toBe('multiagents.results');
    expect(names.topicSubject('events')).toBe('multiagents.events');
    expect(names.deadLetterSubject('commands.payment.charge')).toBe(
      'multiagents_dlq.commands.payment.charge',
    );
  });

  it('builds consumer names without dots, readable and distinct per (topic, group)', () => {
    expect(names.consumerName('commands.inventory.reserve', 'workers')).toBe(
      'commands_2einventory_2ereserve__workers',
    );
    expect(names.consumerName('results', 'orchestrators')).toBe('results__orchestrators');
    // Pairs that a naive join would merge.
    expect(names.consumerName('a_b', 'c')).not.toBe(names.consumerName('a', 'b_c'));
    expect(names.consumerName('a.b', 'c')).not.toBe(names.consumerName('a_b', 'c'));
    expect(names.consumerName('a', 'b__c')).not.toBe(names.consumerName('a__b', 'c'));
  });

  it('is injective on (topic, group) pairs, and every consumer name is a valid JetStream name', () => {
    const token = fc.stringMatching(/^[A-Za-z0-9_:-]{1,12}$/);
    const topic = fc.array(token, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('.'));
    const group = fc.string({ minLength: 1, maxLength: 20, unit: 'binary' });
    fc.assert(
      fc.property(topic, group, topic, group, (t1, g1, t2, g2) => {
        const n1 = names.consumerName(t1, g1);
        const n2 = names.consumerName(t2, g2);
        expect(INVALID_NAME_CHARS.test(n1)).toBe(false);
        expect(n1.length).toBeLessThanOrEqual(MAX_CONSUMER_NAME_LENGTH);
        if (t1 !== t2 || g1 !== g2) expect(n1).not.toBe(n2);
        else expect(n1).toBe(n2);
      }),
      { numRuns: 500 },
    );
  });

  it('round-trips name parts through encodeNamePart/decodeNamePart', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (value) => {
        const encoded = encodeNamePart(value);
        expect(encoded).toMatch(/^[A-Za-z0-9_-]*$/);
        expect(encoded.includes('__')).toBe(false);
        expect(decodeNamePart(encoded)).toBe(value);
      }),
      { numRuns: 500 },
    );
    expect(() => decodeNamePart('a_zz')).toThrow(/bad escape/);
  });

  it('hashes over-long consumer names deterministically, keeping a readable head', () => {
    const long = `commands.${'very-long-worker-name.'.repeat(10)}x`;
    const a = names.consumerName(long, 'workers');
    expect(a.length).toBeLessThanOrEqual(MAX_CONSUMER_NAME_LENGTH);
    expect(a.startsWith('commands_2every-long-worker-name_2e')).toBe(true);
    expect(a).toMatch(/_h[0-9a-f]{32}$/);
    expect(names.consumerName(long, 'workers')).toBe(a);
    expect(names.consumerName(long, 'workers2')).not.toBe(a);
    // The cut lands right after the separator: the head drops it, so the marker never reads as
    // a separator followed by a group named `h…` (which a plain name could contain).
    const cutAtSeparator = names.consumerName('t'.repeat(164), 'g'.repeat(40));
    expect(cutAtSeparator).toMatch(new RegExp(`^t{164}_h[0-9a-f]{32}$`));
  });

  it('uses the envelope id as the message id, hashing one a header cannot carry', () => {
    expect(names.publishId('tx-1:reserve:1')).toBe('tx-1:reserve:1');
    expect(names.timerMessageId('tx-1:retry:charge:2', 1_700_000_000_000)).toBe(
      'tx-1:retry:charge:2@1700000000000',
    );
    for (const bad of ['with space', 'line\nbreak', 'x'.repeat(300), '']) {
      const id = names.publishId(bad);
      expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(names.publishId(bad)).toBe(id);
    }
    expect(names.publishId('a b')).not.toBe(names.publishId('a  b'));
  });

  it('names every stream, bucket and key under the prefix, and parses index keys back', () => {
    expect([names.timerStream, names.timerSubject, names.runsBucket, names.runsStream]).toEqual([
      'multiagents_TIMERS',
      'multiagents_timers',
      'multiagents-runs',
      'KV_multiagents-runs',
    ]);
    expect(names.kvSubject(names.runsBucket, 'r.tx')).toBe('$KV.multiagents-runs.r.tx');
    expect(names.kvKey(names.runsBucket, '$KV.multiagents-runs.l.a.b')).toBe('l.a.b');
    expect(names.runRecord('tx 1')).toBe('r.tx=201');
    const live = names.liveEntry('orders v2', 1_700_000_000_123, 'tx-1');
    expect(live).toBe('l.orders=20v2.0001700000000123.tx-1');
    expect(names.parseLiveEntry(live)).toEqual({
      workflowToken: 'orders=20v2',
      createdAt: 1_700_000_000_123,
      txToken: 'tx-1',
    });
    const done = names.doneEntry('completed', 1_700_000_000_000, 'orders', 1_700_000_000_123, 'tx-1');
    expect(names.parseDoneEntry(done)).toEqual({
      stateToken: 'completed',
      window: 1_700_000_000_000,
      workflowToken: 'orders',
      createdAt: 1_700_000_000_123,
      txToken: 'tx-1',
    });
    expect(names.doneFilter(1_700_000_000_000)).toBe('d.*.0001700000000000.>');
    expect(names.doneFilter(1_700_000_000_000, 'failed', 'orders')).toBe(
      'd.failed.0001700000000000.orders.>',
    );
    expect(names.liveFilter('orders')).toBe('l.orders.>');
    expect(names.parseWindowEntry(names.windowEntry(600_000))).toBe(600_000);
    expect(names.parseLiveEntry(done)).toBeUndefined();
    expect(names.parseDoneEntry(live)).toBeUndefined();
    expect(windowStart(1_234_567, 600_000)).toBe(1_200_000);
  });

  it('refuses prefixes and topics that cannot be a subject, listing the problems', () => {
    expect(() => new NatsNames('multi.agents')).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
    expect(() => new NatsNames('')).toThrow(/prefix/);
    expect(() => new NatsNames('x'.repeat(65))).toThrow(/prefix/);
    for (const bad of ['', 'a..b', '.a', 'a.', 'a b', 'a.*', 'a.>', 'é']) {
      expect(() => names.topicSubject(bad)).toThrow(
        expect.objectContaining({ code: ErrorCode.InvalidArgument }),
      );
    }
    expect(() => names.topicSubject('x'.repeat(256))).toThrow(/at most 255/);
    expect(() => names.consumerName('results', '')).toThrow(/group/);
  });
});
