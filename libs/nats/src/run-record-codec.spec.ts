import { ErrorCode, RunState, StepStatus, rebuildContext, type Run } from '@multiagents/contracts';
import { encodeRunMeta } from '@multiagents/core';
import { makeRun } from '@multiagents/testing';
import { decodeRecord, decodeRun, encodeRecord } from './run-record-codec';

function orderRun(): Run {
  const base = makeRun({ input: { orderId: 'o-1', total: 42 }, state: RunState.Running });
  const steps: Run['steps'] = {
    'reserve inventory': {
      name: 'reserve inventory',
      status: StepStatus.Completed,
      attempt: 1,
      attempts: [{ attempt: 1, startedAt: 1, endedAt: 2, outcome: 'completed' }],
      output: { reservationId: 'r-1', note: 'line\nbreak\ttab' },
      outputSeq: 1,
      completedSeq: 1,
    },
    charge: { name: 'charge', status: StepStatus.Running, attempt: 2, attempts: [] },
  };
  return { ...base, steps, completedCount: 1, outputCount: 1, context: rebuildContext(base.input, steps) };
}

describe('run record codec', () => {
  it('round-trips a run through its record and meta, context rebuilt', () => {
    const run = orderRun();
    const event = { id: `${run.txId}:v3`, data: Uint8Array.of(0, 10, 13, 255, 9) };
    const timers = [[`${run.txId}:timeout:charge:2`, 1_800_000_000_000, 3] as const];
    const record = decodeRecord(encodeRecord(run, { version: 3, event, timers, withMeta: false }));
    expect(record).toMatchObject({
      version: 3,
      state: RunState.Running,
      createdAt: run.createdAt,
      workflowId: run.workflowId,
      eventId: event.id,
      timers,
      meta: undefined,
    });
    expect(Array.from(record.event ?? [])).toEqual(Array.from(event.data));
    expect(decodeRun(record, encodeRunMeta(run))).toEqual(run);
  });

  it('carries the meta when asked, and nothing for an absent event or timers', () => {
    const run = orderRun();
    const record = decodeRecord(
      encodeRecord(run, { version: 1, event: undefined, timers: [], withMeta: true }),
    );
    expect(record.meta).toBe(encodeRunMeta(run));
    expect(record.event).toBeUndefined();
    expect(record.eventId).toBeUndefined();
    expect(record.timers).toEqual([]);
    expect(decodeRun(record, record.meta as string).context).toEqual(run.context);
  });

  it('writes the steps a later transition kept exactly as a fresh encoding would, under their own names', () => {
    const run = orderRun();
    encodeRecord(run, { version: 2, event: undefined, timers: [], withMeta: false });
    const kept = run.steps['reserve inventory']!;
    // The next transition keeps one record as it is, replaces another, and (odd, but allowed by
    // the type) files the kept object under a second name too.
    const next: Run = {
      ...run,
      steps: {
        'reserve inventory': kept,
        charge: { ...run.steps['charge']!, status: StepStatus.Completed, output: { paymentId: 'p-1' } },
        again: kept,
      },
    };
    const fresh: Run = JSON.parse(JSON.stringify(next)) as Run;
    const extras = { version: 3, event: undefined, timers: [], withMeta: false };
    expect(Buffer.from(encodeRecord(next, extras)).equals(Buffer.from(encodeRecord(fresh, extras)))).toBe(
      true,
    );
    expect(Object.keys(decodeRecord(encodeRecord(next, extras)).steps)).toEqual([
      'reserve inventory',
      'charge',
      'again',
    ]);
  });

  it('refuses bytes it did not write with INVALID_ARGUMENT', () => {
    const good = encodeRecord(orderRun(), { version: 1, event: undefined, timers: [], withMeta: true });
    for (const bad of [
      new Uint8Array(0),
      Uint8Array.of(2, ...good.subarray(1)),
      good.subarray(0, good.length - 3),
      new TextEncoder().encode('{"not":"a record"}'),
    ]) {
      expect(() => decodeRecord(bad)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidArgument }));
    }
  });
});
