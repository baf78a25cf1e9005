import { randomUUID } from 'node:crypto';
import { EventType, RunState } from '@multiagents/contracts';
import type { TimelineEntry } from '@multiagents/core';
import { ManualClock, waitFor } from '@multiagents/testing';
import type { NatsBackend } from './nats-backend';
import { NatsContext } from './nats-context';
import { TEST_REQUEST_TIMEOUT_MS, useNatsTestServer } from './testing/nats-test-backend';

jest.setTimeout(6 * TEST_REQUEST_TIMEOUT_MS);

const nats = useNatsTestServer();
let backend: NatsBackend;

beforeEach(async () => {
  backend = await nats().backend();
});

afterEach(async () => {
  await backend.close();
  await nats().destroy(backend.names.prefix);
});

function entry(version: number, state: RunState = RunState.Running): TimelineEntry {
  return {
    version,
    state,
    time: 1_700_000_000_000 + version,
    events: [{ type: EventType.StepStarted, state, step: `s${version}`, attempt: 1 }],
  };
}

describe('NatsTimelineStore (adapter-specific)', () => {
  it('keeps each entry under its own key, written once: a redelivered entry rewrites nothing', async () => {
    const txId = `tx-${randomUUID()}`;
    await backend.timelines.append(txId, [entry(1), entry(2)], 60_000);
    const kv = await nats().kv(backend.names.timelinesBucket);
    const keys: string[] = [];
    for await (const key of await kv.keys()) keys.push(key);
    expect(keys.sort()).toEqual([`t.${txId}.1`, `t.${txId}.2`]);
    const before = await kv.get(`t.${txId}.1`);
    await backend.timelines.append(txId, [entry(1, RunState.Failed)], 60_000);
    expect((await kv.get(`t.${txId}.1`))?.revision).toBe(before?.revision);
    // Read by message gets: no consumer made on the server for it (`kv.keys()` above made one).
    const jsm = await nats().jsm();
    const consumers = async (): Promise<number> =>
      (await jsm.consumers.list(backend.names.timelinesStream).next()).length;
    const made = await consumers();
    expect(await backend.timelines.get(txId)).toEqual([entry(1), entry(2)]);
    expect(await consumers()).toBeLessThanOrEqual(made);
  });

  it('reads a finished timeline by its versions, without a scan of the bucket', async () => {
    const txId = `tx-${randomUUID()}`;
    const entries = [entry(1), entry(2), entry(3), entry(4), entry(5, RunState.Completed)];
    await backend.timelines.append(txId, entries, 60_000);
    const scan = jest.spyOn(NatsContext.prototype, 'kvScan');
    try {
      expect(await backend.timelines.get(txId)).toEqual(entries);
      expect(scan).not.toHaveBeenCalled();
      // A run still going may have more to come: its keys are scanned.
      const going = `tx-${randomUUID()}`;
      await backend.timelines.append(going, [entry(1), entry(2)], 60_000);
      expect(await backend.timelines.get(going)).toEqual([entry(1), entry(2)]);
      expect(scan).toHaveBeenCalledTimes(1);
    } finally {
      scan.mockRestore();
    }
  });

  it('reads a live timeline up to its run version, gaps included, without a scan', async () => {
    // A run at version 38 whose versions 3–29 had no event (signals kept for a later wait step:
    // more than two lookup batches), and whose entry 39 landed after its version was read.
    const txId = `tx-${randomUUID()}`;
    const entries = [entry(1), entry(2), entry(30), entry(38), entry(39)];
    await backend.timelines.append(txId, entries, 60_000);
    const runVersion = jest.fn(async () => 38);
    const scan = jest.spyOn(NatsContext.prototype, 'kvScan');
    try {
      expect(await backend.timelines.get(txId, { runVersion })).toEqual(entries);
      expect(runVersion).toHaveBeenCalledTimes(1);
      // A finished timeline never asks.
      const done = `tx-${randomUUID()}`;
      await backend.timelines.append(done, [entry(1), entry(2, RunState.Completed)], 60_000);
      expect(await backend.timelines.get(done, { runVersion })).toEqual([
        entry(1),
        entry(2, RunState.Completed),
      ]);
      expect(runVersion).toHaveBeenCalledTimes(1);
      expect(scan).not.toHaveBeenCalled();
      // No run to go by (gone from the run store): the keys are scanned.
      expect(await backend.timelines.get(txId, { runVersion: async () => undefined })).toEqual(entries);
      expect(scan).toHaveBeenCalledTimes(1);
    } finally {
      scan.mockRestore();
    }
  });

  it('scans a live timeline when its run is far ahead of its entries, or the run store cannot say', async () => {
    // A step that heartbeats for hours commits a version per beat, with no event: looking each
    // version up would take thousands of lookups.
    const txId = `tx-${randomUUID()}`;
    const entries = [entry(1), entry(2)];
    await backend.timelines.append(txId, entries, 60_000);
    const scan = jest.spyOn(NatsContext.prototype, 'kvScan');
    const get = jest.spyOn(NatsContext.prototype, 'kvGet');
    try {
      expect(await backend.timelines.get(txId, { runVersion: async () => 36_000 })).toEqual(entries);
      expect(scan).toHaveBeenCalledTimes(1);
      // Two lookup batches of eight, and the read of an earlier version's one-key timeline.
      expect(get.mock.calls.length).toBeLessThanOrEqual(2 * 8 + 1);
      // A run store read that fails does not fail the timeline read.
      const failing = jest.fn(async (): Promise<number> => {
        throw new Error('run store unreachable');
      });
      expect(await backend.timelines.get(txId, { runVersion: failing })).toEqual(entries);
      expect(failing).toHaveBeenCalledTimes(1);
      expect(scan).toHaveBeenCalledTimes(2);
    } finally {
      scan.mockRestore();
      get.mockRestore();
    }
  });

  it('reads every entry of a timeline whose versions skip more than one lookup batch', async () => {
    // Transitions without lifecycle events (heartbeats) leave versions without an entry.
    const txId = `tx-${randomUUID()}`;
    const entries = [entry(1), entry(2), entry(20), entry(21, RunState.Compensated)];
    await backend.timelines.append(txId, entries, 60_000);
    expect(await backend.timelines.get(txId)).toEqual(entries);
  });

  it('reads a timeline an earlier version wrote as one key, with the entries appended since', async () => {
    const txId = `tx-${randomUUID()}`;
    const kv = await nats().kv(backend.names.timelinesBucket);
    await backend.timelines.append(txId, [entry(2)], 60_000);
    await kv.put(`t.${txId}`, JSON.stringify({ value: [entry(1)], expiresAt: Date.now() + 60_000 }));
    expect(await backend.timelines.get(txId)).toEqual([entry(1), entry(2)]);
  });

  it('keeps an earlier version’s one-key timeline alive while entries appended since are', async () => {
    // Real time for the key's write stamp (the server's), a manual clock for the reads.
    const clock = new ManualClock(Date.now());
    const timed = await nats().backend({ prefix: backend.names.prefix, clock });
    try {
      const txId = `tx-${randomUUID()}`;
      await timed.timelines.append(txId, [entry(2)], 3_600_000); // makes the bucket
      const kv = await nats().kv(backend.names.timelinesBucket);
      await kv.put(`t.${txId}`, JSON.stringify({ value: [entry(1)], expiresAt: Date.now() + 1_000 }));
      clock.advance(600_000); // the one key's own expiry has passed; the timeline's has not
      expect(await timed.timelines.get(txId)).toEqual([entry(1), entry(2)]);
    } finally {
      await timed.close();
    }
  });

  it('keeps earlier entries while a later append keeps the timeline alive, and forgets it all after', async () => {
    const clock = new ManualClock();
    const timed = await nats().backend({ prefix: backend.names.prefix, clock });
    try {
      const txId = `tx-${randomUUID()}`;
      await timed.timelines.append(txId, [entry(1)], 1_000);
      clock.advance(500);
      await timed.timelines.append(txId, [entry(2)], 60_000);
      clock.advance(1_000); // entry 1's own expiry has passed; the timeline's has not
      expect(await timed.timelines.get(txId)).toEqual([entry(1), entry(2)]);
      clock.advance(60_000);
      expect(await timed.timelines.get(txId)).toBeUndefined();
    } finally {
      await timed.close();
    }
  });

  it('refuses an entry whose version is not a whole number, and writes none of the append', async () => {
    const txId = `tx-${randomUUID()}`;
    await expect(
      backend.timelines.append(txId, [entry(1), { ...entry(2), version: 1.5 }], 60_000),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await backend.timelines.get(txId)).toBeUndefined();
  });

  it('replaces the entries of an expired timeline: the same version appended again starts it afresh', async () => {
    const txId = `tx-${randomUUID()}`;
    await backend.timelines.append(txId, [entry(1), entry(2)], 1);
    await waitFor(async () => (await backend.timelines.get(txId)) === undefined, {
      description: 'timeline expired',
    });
    await backend.timelines.append(txId, [entry(1, RunState.Completed)], 60_000);
    expect(await backend.timelines.get(txId)).toEqual([entry(1, RunState.Completed)]);
  });
});

describe('NatsTimelineStore marks (adapter-specific)', () => {
  it('stores a mark as its holder’s token and expiry, rewritten on its revision when extended', async () => {
    const key = `stuck:${randomUUID()}`;
    const kv = await nats().kv(backend.names.timelinesBucket);
    const name = backend.names.monitorMark(key);
    const token = await backend.timelines.markOnce(key, 30_000);
    const taken = await kv.get(name);
    expect(taken?.json()).toEqual({ value: token, expiresAt: expect.any(Number) });
    expect(await backend.timelines.extendMark(key, token as string, 86_400_000)).toBe(true);
    const extended = await kv.get(name);
    expect(extended?.revision).toBeGreaterThan(taken?.revision ?? Infinity);
    expect((extended?.json<{ expiresAt: number }>().expiresAt ?? 0) - Date.now()).toBeGreaterThan(30_000);
  });

  it('honours a mark an earlier version set (no token) until it expires, and lets no token extend it', async () => {
    const key = `stuck:${randomUUID()}`;
    // The bucket is made on first use.
    expect(await backend.timelines.get(`tx-${randomUUID()}`)).toBeUndefined();
    const kv = await nats().kv(backend.names.timelinesBucket);
    const name = backend.names.monitorMark(key);
    await kv.put(name, JSON.stringify({ value: true, expiresAt: Date.now() + 60_000 }));
    expect(await backend.timelines.markOnce(key, 30_000)).toBeUndefined();
    expect(await backend.timelines.extendMark(key, 'true', 30_000)).toBe(false);
    await kv.put(name, JSON.stringify({ value: true, expiresAt: Date.now() - 1 }));
    const token = await backend.timelines.markOnce(key, 30_000);
    expect(token).toEqual(expect.any(String));
    expect(await backend.timelines.extendMark(key, token as string, 60_000)).toBe(true);
  });
});
