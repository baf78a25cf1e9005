import type { Envelope } from '@multiagents/contracts';
import { handToTail } from './hand-to-tail';

describe('handToTail', () => {
  const envelope = { id: 'e-1' } as Envelope;

  it('hands the decoded envelope over, and reports what the handler throws instead of raising it', () => {
    const seen: string[] = [];
    const threw: unknown[] = [];
    const failure = new Error('a watcher that fails');
    handToTail(
      () => envelope,
      (e) => seen.push(e.id),
      fail,
      (err) => threw.push(err),
    );
    handToTail(
      () => envelope,
      () => {
        throw failure;
      },
      fail,
      (err) => threw.push(err),
    );
    expect(seen).toEqual(['e-1']);
    expect(threw).toEqual([failure]);
  });

  it('counts bytes that do not decode and never calls the handler with them', () => {
    let refused = 0;
    const handler = jest.fn();
    handToTail(
      () => {
        throw new Error('undecodable');
      },
      handler,
      () => (refused += 1),
      fail,
    );
    expect(refused).toBe(1);
    expect(handler).not.toHaveBeenCalled();
  });
});

function fail(): never {
  throw new Error('not expected');
}
