import type { LocalWorkers } from '@multiagents/core';
import { localDispatchOptions } from './local-dispatch';

describe('localDispatchOptions', () => {
  const local: LocalWorkers = { deliverResultsTo: () => {}, reserve: () => undefined, running: () => false };
  const redis = { redispatchAfterMs: 300_000, recoverySweepIntervalMs: 0 };

  it('keeps the backend settings when the process hosts no workers', () => {
    expect(localDispatchOptions(undefined, redis, undefined)).toEqual(redis);
    expect(localDispatchOptions(undefined, redis, 2_000)).toEqual({ ...redis, redispatchAfterMs: 2_000 });
  });

  it('sweeps on a backend that does not, every minute or redispatch delay, whichever is shorter', () => {
    expect(localDispatchOptions(local, redis, undefined)).toEqual({
      redispatchAfterMs: 300_000,
      recoverySweepIntervalMs: 60_000,
      localWorkers: local,
    });
    expect(localDispatchOptions(local, redis, 2_000)).toEqual({
      redispatchAfterMs: 2_000,
      recoverySweepIntervalMs: 2_000,
      localWorkers: local,
    });
  });

  it("keeps a backend's own sweep, and adds none where commands are never sent twice", () => {
    const nats = { redispatchAfterMs: 30_000, recoverySweepIntervalMs: 10_000 };
    expect(localDispatchOptions(local, nats, undefined)).toEqual({ ...nats, localWorkers: local });
    const memory = { redispatchAfterMs: 0 };
    expect(localDispatchOptions(local, memory, undefined)).toEqual({ ...memory, localWorkers: local });
  });
});
