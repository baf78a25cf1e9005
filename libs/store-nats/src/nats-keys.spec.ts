import { BucketKind, NatsKeys, windowStart } from './nats-keys';

const keys = new NatsKeys('prod');
/** The KV client's own key check. */
const VALID_KEY = /^[-/=.\w]+$/;

describe('NatsKeys', () => {
  it('names buckets <prefix>-<role>', () => {
    expect(keys.bucket(BucketKind.Runs)).toBe('prod-runs');
    expect(Object.values(BucketKind).map((k) => keys.bucket(k))).toEqual(
      expect.arrayContaining(['prod-run-index', 'prod-timer-due', 'prod-definitions']),
    );
  });

  it('builds valid keys from hostile input, and parses index keys back', () => {
    const txId = 'tx.with *wild> chars';
    const key = keys.runIndex('compensation_failed', 'orders.v2', 1_700_000_123_456, txId, 3_600_000);
    expect(key).toMatch(VALID_KEY);
    expect(key.split('.')).toHaveLength(6);
    expect(keys.parseRunIndex(key)).toEqual({
      key,
      stateToken: 'compensation_failed',
      workflowToken: 'orders=2Ev2',
      window: 1_699_999_200_000,
      createdAt: 1_700_000_123_456,
      txToken: 'tx=2Ewith=20=2Awild=3E=20chars',
    });
    expect(keys.run(txId)).toBe(`r.${keys.parseRunIndex(key)?.txToken}`);
    for (const k of [
      keys.idempotency('a.b c'),
      keys.outbox(txId),
      keys.timer('t.1'),
      keys.definition('x y', 3),
    ]) {
      expect(k).toMatch(VALID_KEY);
      expect(k.split('.')).toHaveLength(k.startsWith('v.') ? 3 : 2);
    }
  });

  it('filters one window with wildcards for what the filter leaves open', () => {
    expect(keys.runIndexFilter(0)).toBe('s.*.*.0000000000000000.>');
    expect(keys.runIndexFilter(3_600_000, 'running', 'orders')).toBe('s.running.orders.0000000003600000.>');
  });

  it('round-trips due entries, windows and slots, and rejects foreign keys', () => {
    const due = keys.timerDue(10_000, 12_345, 'tx-1:charge:retry:2', '7-abcdef');
    expect(due).toMatch(VALID_KEY);
    expect(keys.parseTimerDue(due)).toEqual({
      key: due,
      slot: 10_000,
      visibleAt: 12_345,
      idToken: 'tx-1=3Acharge=3Aretry=3A2',
      placement: '7-abcdef',
    });
    expect(keys.parseRunWindow(keys.runWindow(7_200_000))).toBe(7_200_000);
    expect(keys.parseTimerSlot(keys.timerSlot(5_000))).toBe(5_000);
    expect(keys.parseOutbox(keys.outbox('tx-9'))).toBe('tx-9');
    expect(keys.parseRunIndex('s.a.b.c')).toBeUndefined();
    expect(keys.parseTimerDue('d.x.y.z.w')).toBeUndefined();
    expect(keys.parseRunWindow('b.0000000000000000')).toBeUndefined();
  });

  it('cuts time into windows', () => {
    expect(windowStart(0, 1_000)).toBe(0);
    expect(windowStart(1_999, 1_000)).toBe(1_000);
    expect(windowStart(2_000, 1_000)).toBe(2_000);
  });
});
