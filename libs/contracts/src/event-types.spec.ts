import { decodeEnvelope, encodeEnvelope } from './envelope-codec';
import type { Envelope } from './envelope';
import { EventType, isEventType, LIFECYCLE_EVENT_TYPES } from './event-types';
import type { StepProgressPayload } from './payloads';

describe('step.progress', () => {
  const progress: Envelope<StepProgressPayload> = {
    id: 'tx-1:research:1:progress:abc',
    type: EventType.StepProgress,
    txId: 'tx-1',
    workflowId: 'research',
    step: 'research',
    attempt: 1,
    time: 1_700_000_000_000,
    headers: {},
    payload: { commandId: 'tx-1:research:1', seq: 3, deltas: { answer: 'Par' }, droppedChars: 2 },
  };

  it('is a known event type that survives the envelope codec', () => {
    expect(isEventType('step.progress')).toBe(true);
    expect(decodeEnvelope(encodeEnvelope(progress))).toEqual(progress);
  });

  it('is not a lifecycle event: it is not part of a run’s history', () => {
    expect(LIFECYCLE_EVENT_TYPES).not.toContain(EventType.StepProgress);
  });
});
