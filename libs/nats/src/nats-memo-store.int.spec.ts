import { TEST_REQUEST_TIMEOUT_MS, useNatsTestServer } from './testing/nats-test-backend';

// Slowness on a loaded machine is not a failure: each test may take a few slow requests.
jest.setTimeout(6 * TEST_REQUEST_TIMEOUT_MS);

const nats = useNatsTestServer();

describe('NatsMemoStore', () => {
  it('makes its bucket on first use, under the prefix, with the retention and replicas asked for', async () => {
    const backend = await nats().backend({ memoMaxAgeMs: 3_600_000 });
    try {
      const jsm = await nats().jsm();
      const stream = backend.names.memoStream;
      await expect(jsm.streams.info(stream)).rejects.toThrow(/stream not found/);
      await backend.memo.put('tx-1:answer', { answer: 'Paris' });
      const { config } = await jsm.streams.info(stream);
      expect(stream).toBe(`KV_${backend.names.prefix}-memo`);
      expect(config).toMatchObject({
        max_age: 3_600_000 * 1_000_000,
        num_replicas: 1,
        max_msgs_per_subject: 1,
      });
      const kv = await nats().kv(backend.names.memoBucket);
      const entry = await kv.get(backend.names.memoRecord('tx-1:answer'));
      expect(entry?.string()).toBe('{"answer":"Paris"}');
    } finally {
      await backend.close();
      await nats().destroy(backend.names.prefix);
    }
  });

  it('refuses a retention shorter than the finished runs are kept', async () => {
    await expect(
      nats().backend({ memoMaxAgeMs: 1_000, maintenance: { terminalRunTtlMs: 60_000 } }),
    ).rejects.toThrow(/memoMaxAgeMs \(1000\) must not be shorter than maintenance.terminalRunTtlMs/);
  });
});
