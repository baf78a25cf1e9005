import { createKeyRing, ErrorCode, isSealedJson, sealedKeyId, type Run } from '@multiagents/contracts';
import type { CreateRunResult, RunStore, StoredRun, Transition } from '@multiagents/core';
import { MemoryEventBus, MemoryRunStore } from '@multiagents/memory';
import { makeRun } from '@multiagents/testing';
import { SealingRunStore } from './sealing-run-store';

/** Keeps what it is given, as a broker would: the test reads it "raw". */
class RawStore implements RunStore {
  readonly runs = new Map<string, StoredRun>();
  create(transition: Transition): Promise<CreateRunResult> {
    const stored = { run: transition.run, version: 1, revision: '1' };
    this.runs.set(transition.run.txId, stored);
    return Promise.resolve({ created: true, stored });
  }
  commit(_expected: unknown, transition: Transition): Promise<{ version: number; revision: string }> {
    this.runs.set(transition.run.txId, { run: transition.run, version: 2, revision: '2' });
    return Promise.resolve({ version: 2, revision: '2' });
  }
  get(txId: string): Promise<StoredRun | undefined> {
    return Promise.resolve(this.runs.get(txId));
  }
  list(): Promise<{ runs: Run[] }> {
    return Promise.resolve({ runs: [...this.runs.values()].map((stored) => stored.run) });
  }
  claimDueTimers(): Promise<never[]> {
    return Promise.resolve([]);
  }
  completeTimers(): Promise<void> {
    return Promise.resolve();
  }
  countByState(): Promise<never> {
    return Promise.reject(new Error('not used'));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const k1 = createKeyRing([['k1', Buffer.alloc(32, 1)]]);
const k2 = createKeyRing([
  ['k2', Buffer.alloc(32, 2)],
  ['k1', Buffer.alloc(32, 1)],
]);
const transition = (run: Run): Transition => ({
  run,
  changedSteps: [],
  commands: [],
  schedule: [],
  cancel: [],
});

function secretRun(): Run {
  const base = makeRun({ input: { card: '4111111111111111' }, signals: { approve: [{ by: 'alice' }] } });
  return {
    ...base,
    steps: {
      charge: {
        name: 'charge',
        status: 'completed',
        attempt: 1,
        attempts: [],
        output: { paymentId: 'p-1' },
        outputSeq: 1,
      },
    },
  };
}

describe('SealingRunStore', () => {
  it('stores the input, step outputs and signals sealed, and reads them back with the context rebuilt', async () => {
    const raw = new RawStore();
    const store = new SealingRunStore(raw, k1);
    const run = secretRun();
    await store.create(transition(run));
    const kept = raw.runs.get(run.txId)?.run as Run;
    expect(JSON.stringify(kept)).not.toMatch(/4111111111111111|p-1|alice/);
    expect(isSealedJson(kept.input)).toBe(true);
    const read = (await store.get(run.txId))?.run;
    expect(read?.input).toEqual(run.input);
    expect(read?.signals).toEqual(run.signals);
    expect(read?.context).toMatchObject({ card: '4111111111111111', paymentId: 'p-1' });
    expect((await store.list({}, 10)).runs[0]?.input).toEqual(run.input);
  });

  it("stores every error sealed (the run's, a step's, its attempts' and its compensation's) and reads them back", async () => {
    const raw = new RawStore();
    const store = new SealingRunStore(raw, k1);
    const declined = (where: string) => ({
      code: 'CARD_DECLINED',
      message: `card 4111111111111111 declined (${where})`,
      retryable: false,
      details: { card: '4111111111111111' },
    });
    const base = secretRun();
    const run: Run = {
      ...base,
      state: 'compensated',
      error: declined('run'),
      steps: {
        ...base.steps,
        reserve: {
          name: 'reserve',
          status: 'failed',
          attempt: 2,
          attempts: [
            { attempt: 1, startedAt: 1, endedAt: 2, outcome: 'failed', error: declined('attempt 1') },
            { attempt: 2, startedAt: 3, endedAt: 4, outcome: 'failed', error: declined('attempt 2') },
          ],
          error: declined('step'),
          compensation: {
            status: 'failed',
            attempt: 1,
            attempts: [
              { attempt: 1, startedAt: 5, endedAt: 6, outcome: 'failed', error: declined('undo 1') },
            ],
            startedAt: 5,
            error: declined('undo'),
          },
        },
      },
    };
    await store.create(transition(run));
    const kept = raw.runs.get(run.txId)?.run as Run;
    expect(JSON.stringify(kept)).not.toMatch(/4111111111111111|declined|CARD_DECLINED/);
    // A run without failures is not copied step by step: its records hold no error to seal.
    expect(kept.steps['charge']?.attempts).toBe(run.steps['charge']?.attempts);
    const read = (await store.get(run.txId))?.run as Run;
    expect(read.error).toEqual(run.error);
    expect(read.steps['reserve']).toEqual(run.steps['reserve']);
    // Each error is bound to its place: the step's error moved onto the run does not open.
    raw.runs.set(run.txId, {
      run: { ...kept, error: kept.steps['reserve']?.error },
      version: 1,
      revision: '1',
    });
    await expect(store.get(run.txId)).rejects.toMatchObject({ code: ErrorCode.PayloadRejected });
  });

  it('seals what a transition changed: an unchanged record, input or signals are handed over sealed as before', async () => {
    const raw = new RawStore();
    const store = new SealingRunStore(raw, k1);
    const run = secretRun();
    await store.create(transition(run));
    const first = raw.runs.get(run.txId)?.run as Run;
    // The next transition replaces the record it changes and keeps the others (as the engine does).
    const charge = run.steps['charge'] as Run['steps'][string];
    const next: Run = {
      ...run,
      updatedAt: run.updatedAt + 1,
      steps: {
        charge,
        ship: { name: 'ship', status: 'completed', attempt: 1, attempts: [], output: { trackingId: 't-1' } },
        // The same record under a second name is sealed again, bound to that name.
        copy: charge,
      },
    };
    await store.commit({ version: 1, revision: '1' }, transition(next));
    const second = raw.runs.get(run.txId)?.run as Run;
    expect(second.steps['charge']).toBe(first.steps['charge']);
    expect(second.input).toBe(first.input);
    expect(second.signals).toBe(first.signals);
    expect(second.steps['copy']).not.toBe(second.steps['charge']);
    expect(JSON.stringify(second)).not.toMatch(/4111111111111111|p-1|t-1|alice/);
    const read = (await store.get(run.txId))?.run as Run;
    expect(read.steps['copy']?.output).toEqual({ paymentId: 'p-1' });
    expect(read.steps['ship']?.output).toEqual({ trackingId: 't-1' });
  });

  it('writes a run read back without sealing it again, and seals what was stored in plaintext', async () => {
    const raw = new RawStore();
    const run = secretRun();
    await new SealingRunStore(raw, k1).create(transition(run));
    const stored = raw.runs.get(run.txId)?.run as Run;
    // Another process (a fresh store) reads the run and writes its next transition unchanged.
    const reader = new SealingRunStore(raw, k1);
    const read = (await reader.get(run.txId))?.run as Run;
    await reader.commit({ version: 1, revision: '1' }, transition(read));
    const written = raw.runs.get(run.txId)?.run as Run;
    expect(written.steps['charge']).toBe(stored.steps['charge']);
    expect(written.input).toBe(stored.input);
    expect(written.signals).toBe(stored.signals);
    // A run written before encryption was turned on: read as it is while migrating, sealed when
    // next written.
    const plain = secretRun();
    await raw.create(transition(plain));
    const migrating = new SealingRunStore(raw, k1, { acceptPlaintext: true });
    const legacy = (await migrating.get(plain.txId))?.run as Run;
    await migrating.commit({ version: 1, revision: '1' }, transition(legacy));
    expect(JSON.stringify(raw.runs.get(plain.txId)?.run)).not.toMatch(/4111111111111111|p-1|alice/);
  });

  it('reads what an older key sealed after rotation; a sealed value moved to another run does not open', async () => {
    const raw = new RawStore();
    const run = secretRun();
    await new SealingRunStore(raw, k1).create(transition(run));
    expect((await new SealingRunStore(raw, k2).get(run.txId))?.run.input).toEqual(run.input);
    // A new write after rotation uses k2; a reader with k1 only cannot open it.
    await new SealingRunStore(raw, k2).commit({ version: 1, revision: '1' }, transition(run));
    await expect(new SealingRunStore(raw, k1).get(run.txId)).rejects.toMatchObject({
      code: ErrorCode.PayloadRejected,
    });
    // Copy the sealed input into another run: bound to its txId, it is refused.
    const other = makeRun();
    raw.runs.set(other.txId, {
      run: { ...other, input: (raw.runs.get(run.txId)?.run as Run).input },
      version: 1,
      revision: '1',
    });
    await expect(new SealingRunStore(raw, k2).get(other.txId)).rejects.toMatchObject({
      code: ErrorCode.PayloadRejected,
    });
  });

  it('moves a run read back to the current key when it writes it, so the old key can be retired', async () => {
    const raw = new RawStore();
    const run = secretRun();
    await new SealingRunStore(raw, k1).create(transition(run));
    // After rotation a process reads the run and writes its next transition unchanged.
    const rotated = new SealingRunStore(raw, k2);
    const read = (await rotated.get(run.txId))?.run as Run;
    await rotated.commit({ version: 1, revision: '1' }, transition(read));
    const written = raw.runs.get(run.txId)?.run as Run;
    const kids = [written.input, written.signals, written.steps['charge']?.output].map((sealed) =>
      isSealedJson(sealed) ? sealedKeyId(sealed) : 'plaintext',
    );
    expect(kids).toEqual(['k2', 'k2', 'k2']);
    // The old key retired: the run still reads.
    const k2Only = createKeyRing([['k2', Buffer.alloc(32, 2)]]);
    expect((await new SealingRunStore(raw, k2Only).get(run.txId))?.run.input).toEqual(run.input);
  });

  it('refuses a value found in plaintext, unless told to read it as written before encryption', async () => {
    const raw = new RawStore();
    const run = secretRun();
    await raw.create(transition(run));
    // Planted by a writer to the broker who holds no key, or left from before encryption.
    await expect(new SealingRunStore(raw, k1).get(run.txId)).rejects.toMatchObject({
      code: ErrorCode.PayloadRejected,
      details: { reason: 'plaintext' },
    });
    const migrating = new SealingRunStore(raw, k1, { acceptPlaintext: true });
    expect((await migrating.get(run.txId))?.run.input).toEqual(run.input);
    // One sealed value among plaintext ones is no pass: the output planted in a sealed run is refused.
    const sealedRun = secretRun();
    await new SealingRunStore(raw, k1).create(transition(sealedRun));
    const stored = raw.runs.get(sealedRun.txId)?.run as Run;
    const charge = stored.steps['charge'] as NonNullable<Run['steps'][string]>;
    stored.steps['charge'] = { ...charge, output: { paymentId: 'forged' } };
    await expect(new SealingRunStore(raw, k1).get(sealedRun.txId)).rejects.toMatchObject({
      code: ErrorCode.PayloadRejected,
    });
  });

  it('holds starts where the store it seals holds them, and adds no bound of its own', async () => {
    expect(new SealingRunStore(new RawStore(), k1).admit).toBeUndefined();
    const bounded = new MemoryRunStore({ bus: new MemoryEventBus(), maxActiveRuns: 1 });
    const store = new SealingRunStore(bounded, k1);
    const release = await store.admit!();
    let second = false;
    const next = store.admit!().then((r) => ((second = true), r));
    await new Promise((resolve) => setImmediate(resolve));
    expect(second).toBe(false);
    release();
    (await next)();
    expect(second).toBe(true);
  });
});
