import { JetStreamApiError } from '@nats-io/jetstream';
import { untilAnswered } from './nats-context';

function noResponders(): Error {
  // What the client throws for a JetStream request nobody listened to.
  const cause = Object.assign(new Error("no responders: '$KV.b.k'"), { name: 'NoRespondersError' });
  return Object.assign(new Error('jetstream is not enabled', { cause }), { name: 'JetStreamNotEnabled' });
}

describe('untilAnswered', () => {
  it('tries a request again while nobody answers it, and returns its answer', async () => {
    const request = jest
      .fn<Promise<string>, []>()
      .mockRejectedValueOnce(noResponders())
      .mockRejectedValueOnce(noResponders())
      .mockResolvedValue('stored');
    await expect(untilAnswered(request)).resolves.toBe('stored');
    expect(request).toHaveBeenCalledTimes(3);
  });

  it('never tries again a request the server answered with an error', async () => {
    const refused = new JetStreamApiError({
      code: 400,
      err_code: 10071,
      description: 'wrong last sequence: 4',
    });
    const request = jest.fn<Promise<string>, []>().mockRejectedValue(refused);
    await expect(untilAnswered(request)).rejects.toBe(refused);
    expect(request).toHaveBeenCalledTimes(1);
  });

  it('gives up, with the last failure, when nobody ever answers', async () => {
    const request = jest.fn<Promise<string>, []>().mockRejectedValue(noResponders());
    await expect(untilAnswered(request)).rejects.toThrow(/jetstream is not enabled/);
    expect(request.mock.calls.length).toBeGreaterThan(1);
  });
});
