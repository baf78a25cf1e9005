import type { Envelope } from './envelope';
import { PoisonMessageError } from './errors';
import { decodeHeartbeat, EventRejectReason, eventRejectReasonOf } from './event-decoding';
import { EventType } from './event-types';

function heartbeat(payload: unknown): Envelope {
  return {
    id: 'wm-1:heartbeat:1',
    type: EventType.WorkerHeartbeat,
    txId: '-',
    workflowId: '-',
    time: 1_700_000_000_000,
    headers: {},
    payload,
  };
}

/** What decodeHeartbeat throws for `payload` (undefined when it accepts it). */
function refusal(payload: unknown): unknown {
  try {
    decodeHeartbeat(heartbeat(payload));
    return undefined;
  } catch (err) {
    return err;
  }
}

describe('decodeHeartbeat', () => {
  const base = { managerId: 'wm-1', workers: ['payment.charge'], inFlight: 2 };

  it('accepts a heartbeat with a lingering count, and one without (an older worker-manager)', () => {
    expect(decodeHeartbeat(heartbeat({ ...base, lingering: 1 }))).toEqual({ ...base, lingering: 1 });
    expect(decodeHeartbeat(heartbeat({ ...base, lingering: 0 }))).toEqual({ ...base, lingering: 0 });
    expect(decodeHeartbeat(heartbeat(base))).toEqual(base);
  });

  it.each([
    ['negative', -1],
    ['fractional', 1.5],
    ['a string', '1'],
    ['null', null],
    ['not finite', Number.POSITIVE_INFINITY],
    ['NaN', Number.NaN],
    ['beyond a safe integer', 2 ** 53],
  ])('refuses a lingering count that is %s, as it refuses such an inFlight', (_label, value) => {
    for (const payload of [
      { ...base, lingering: value },
      { ...base, inFlight: value },
    ]) {
      const err = refusal(payload);
      expect(err).toBeInstanceOf(PoisonMessageError);
      expect(eventRejectReasonOf(err)).toBe(EventRejectReason.BadHeartbeat);
      expect((err as Error).message).toContain('expected { managerId, workers[], inFlight }');
    }
  });

  it('accepts a large count as it accepts a large inFlight (bounds are up to those who show it)', () => {
    expect(decodeHeartbeat(heartbeat({ ...base, inFlight: 1e9, lingering: 1e9 }))).toMatchObject({
      inFlight: 1e9,
      lingering: 1e9,
    });
  });

  it('refuses a payload of the wrong shape', () => {
    for (const payload of [
      null,
      'x',
      { ...base, managerId: '' },
      { ...base, workers: [1] },
      { managerId: 7 },
    ]) {
      expect(eventRejectReasonOf(refusal(payload))).toBe(EventRejectReason.BadHeartbeat);
    }
  });
});
