import { createKeyRing, ErrorCode, EventType, RunState } from '@multiagents/contracts';
import type { TimelineEntry, TimelineStore } from '@multiagents/core';
import { SealingTimelineStore } from './sealing-timeline-store';

/** Keeps entries by run and version, first one wins, as the backends' timeline stores do. */
class RawTimelines implements TimelineStore {
  readonly entries = new Map<string, Map<number, TimelineEntry>>();
  append(txId: string, entries: readonly TimelineEntry[]): Promise<void> {
    const run = this.entries.get(txId) ?? new Map<number, TimelineEntry>();
    for (const entry of entries) if (!run.has(entry.version)) run.set(entry.version, entry);
    this.entries.set(txId, run);
    return Promise.resolve();
  }
  get(txId: string): Promise<TimelineEntry[] | undefined> {
    const run = this.entries.get(txId);
    return Promise.resolve(run && [...run.values()].sort((a, b) => a.version - b.version));
  }
  markOnce(): Promise<string | undefined> {
    return Promise.resolve('token-1');
  }
  extendMark(): Promise<boolean> {
    return Promise.resolve(true);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const keys = createKeyRing([['k1', Buffer.alloc(32, 1)]]);

function failedEntry(version: number): TimelineEntry {
  return {
    version,
    state: RunState.Compensating,
    time: 1_700_000_000_000 + version,
    workflowId: 'order',
    events: [
      {
        type: EventType.StepFailed,
        state: RunState.Compensating,
        step: 'charge',
        attempt: 1,
        error: { code: 'DECLINED', message: 'card 4111111111111111 declined', retryable: false },
      },
    ],
  };
}

describe('SealingTimelineStore', () => {
  it("keeps each entry's events sealed at rest, its version, state and time readable, and reads them back", async () => {
    const raw = new RawTimelines();
    const timelines = new SealingTimelineStore(raw, keys);
    await timelines.append('tx-1', [failedEntry(2), failedEntry(3)], 60_000);
    const kept = (await raw.get('tx-1')) ?? [];
    expect(JSON.stringify(kept)).not.toMatch(/4111111111111111|declined/);
    expect(kept.map((e) => [e.version, e.state, e.time])).toEqual([
      [2, RunState.Compensating, 1_700_000_000_002],
      [3, RunState.Compensating, 1_700_000_000_003],
    ]);
    expect(await timelines.get('tx-1')).toEqual([failedEntry(2), failedEntry(3)]);
    expect(await timelines.get('tx-2')).toBeUndefined();
  });

  it('hands the read options to the store it wraps', async () => {
    const raw = new RawTimelines();
    const get = jest.spyOn(raw, 'get');
    const options = { runVersion: () => Promise.resolve(3) };
    await new SealingTimelineStore(raw, keys).get('tx-1', options);
    expect(get).toHaveBeenCalledWith('tx-1', options);
  });

  it('hands marks to the store it wraps: the lease it takes, and the extension of that lease', async () => {
    const raw = new RawTimelines();
    const markOnce = jest
      .spyOn(raw, 'markOnce')
      .mockResolvedValueOnce('token-7')
      .mockResolvedValueOnce(undefined);
    const extendMark = jest.spyOn(raw, 'extendMark').mockResolvedValueOnce(true).mockResolvedValueOnce(false);
    const timelines = new SealingTimelineStore(raw, keys);
    expect(await timelines.markOnce('stuck:tx-1:5', 30_000)).toBe('token-7');
    expect(await timelines.markOnce('stuck:tx-1:5', 30_000)).toBeUndefined();
    expect(await timelines.extendMark('stuck:tx-1:5', 'token-7', 86_400_000)).toBe(true);
    expect(await timelines.extendMark('stuck:tx-1:5', 'token-6', 86_400_000)).toBe(false);
    expect(markOnce).toHaveBeenCalledWith('stuck:tx-1:5', 30_000);
    expect(extendMark.mock.calls).toEqual([
      ['stuck:tx-1:5', 'token-7', 86_400_000],
      ['stuck:tx-1:5', 'token-6', 86_400_000],
    ]);
  });

  it('refuses entries in plaintext (read while migrating); events moved to another version do not open', async () => {
    const raw = new RawTimelines();
    await raw.append('tx-1', [failedEntry(1)]);
    await expect(new SealingTimelineStore(raw, keys).get('tx-1')).rejects.toMatchObject({
      code: ErrorCode.PayloadRejected,
    });
    const timelines = new SealingTimelineStore(raw, keys, { acceptPlaintext: true });
    await timelines.append('tx-1', [failedEntry(2)], 60_000);
    expect(await timelines.get('tx-1')).toEqual([failedEntry(1), failedEntry(2)]);
    const sealed = raw.entries.get('tx-1')?.get(2) as TimelineEntry;
    raw.entries.get('tx-1')?.set(3, { ...sealed, version: 3 });
    await expect(timelines.get('tx-1')).rejects.toMatchObject({ code: ErrorCode.PayloadRejected });
  });
});
