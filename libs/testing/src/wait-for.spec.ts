import { waitFor } from './wait-for';

describe('waitFor', () => {
  it('resolves as soon as the predicate holds, sync or async', async () => {
    let calls = 0;
    await waitFor(
      () => {
        calls += 1;
        return calls === 3;
      },
      { intervalMs: 1 },
    );
    expect(calls).toBe(3);
    await waitFor(async () => Promise.resolve(true));
  });

  it('times out with an error naming what was awaited and the last failure', async () => {
    const started = Date.now();
    await expect(
      waitFor(
        () => {
          throw new Error('not connected');
        },
        { timeoutMs: 50, intervalMs: 5, description: 'the server' },
      ),
    ).rejects.toThrow('waitFor timed out after 50 ms: the server (last check threw: not connected)');
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
  });
});
