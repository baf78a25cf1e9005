import { ErrorCode, MultiAgentsError, PoisonMessageError } from '@multiagents/contracts';
import { retryAfterOutage } from './outage-retry';

describe('retryAfterOutage', () => {
  it('leaves a non-retryable error as it is, so a poison message is dead-lettered at once', () => {
    const poison = new PoisonMessageError('undecodable');
    expect(retryAfterOutage(poison, 1, 250)).toBe(poison);
    expect(retryAfterOutage(poison, 1, 250)).not.toHaveProperty('retryAfterMs');
  });

  it('asks for a delay that doubles with each delivery, up to 30 s', () => {
    const delays = [1, 2, 3, 7, 8, 60].map(
      (count) =>
        (
          retryAfterOutage(new MultiAgentsError(ErrorCode.Timeout, 'no responders'), count, 250) as {
            retryAfterMs: number;
          }
        ).retryAfterMs,
    );
    expect(delays).toEqual([500, 1_000, 2_000, 30_000, 30_000, 30_000]);
  });

  it('wraps what is not an Error', () => {
    const wrapped = retryAfterOutage('socket closed', 1, 10) as Error & { retryAfterMs: number };
    expect(wrapped).toBeInstanceOf(Error);
    expect(wrapped.message).toBe('socket closed');
    expect(wrapped.retryAfterMs).toBe(20);
  });
});
