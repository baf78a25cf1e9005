import { ProgressThrottle, type ProgressReport, type ProgressSink } from './progress-throttle';
import {
  deferred,
  flushPromises,
  manualClock,
  manualScheduler,
  recordingLogger,
  type Deferred,
} from './test-support';

/** A sink that records each report with the (manual) time it was handed over. */
function recordingSink(clock: {
  now(): number;
}): ProgressSink & { reports: (ProgressReport & { at: number })[] } {
  const reports: (ProgressReport & { at: number })[] = [];
  return {
    reports,
    publish: async (report) => void reports.push({ ...report, at: clock.now() }),
  };
}

function setup(maxPerSecond = 10, sink?: ProgressSink) {
  const clock = manualClock(0);
  const scheduler = manualScheduler(clock);
  const recorded = recordingSink(clock);
  const logger = recordingLogger();
  const throttle = new ProgressThrottle({
    sink: sink ?? recorded,
    maxPerSecond,
    clock,
    logger,
    schedule: scheduler.schedule,
    maxPendingChars: 100,
  });
  return { clock, scheduler, reports: recorded.reports, logger, throttle };
}

describe('ProgressThrottle', () => {
  it('publishes the first report at once', async () => {
    const { throttle, reports } = setup();
    throttle.offer({ deltas: { answer: 'Par' } });
    await flushPromises();
    expect(reports).toEqual([{ seq: 1, deltas: { answer: 'Par' }, at: 0 }]);
  });

  it('coalesces reports inside the interval: text concatenated per field, the latest status kept', async () => {
    const { throttle, reports, scheduler } = setup(10);
    throttle.offer({ deltas: { answer: 'P' } });
    await flushPromises();
    throttle.offer({ deltas: { answer: 'ar' }, status: { tool: 'search' } });
    throttle.offer({ deltas: { reasoning: 'because', answer: 'is' } });
    throttle.offer({ status: { tool: 'none' } });
    await scheduler.advance(99);
    expect(reports).toHaveLength(1);

    await scheduler.advance(1);
    expect(reports).toEqual([
      { seq: 1, deltas: { answer: 'P' }, at: 0 },
      { seq: 2, deltas: { answer: 'aris', reasoning: 'because' }, status: { tool: 'none' }, at: 100 },
    ]);
    expect(scheduler.pending()).toBe(0);
  });

  it('never publishes more than maxPerSecond in any second, and loses no text', async () => {
    const { throttle, reports, scheduler } = setup(10);
    let sent = '';
    // A model streaming a token every 7 ms for 3 s: ~430 reports.
    for (let i = 0; i < 430; i++) {
      const token = `t${i} `;
      sent += token;
      throttle.offer({ deltas: { answer: token } });
      // Microtasks (the hand-over to the sink) run before time moves on, as they do for real.
      await flushPromises();
      await scheduler.advance(7);
    }
    await scheduler.advance(1_000);

    const times = reports.map((r) => r.at);
    for (const start of times) {
      expect(times.filter((t) => t >= start && t < start + 1_000).length).toBeLessThanOrEqual(10);
    }
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(100);
    expect(reports.length).toBeGreaterThanOrEqual(30);
    expect(reports.map((r) => r.seq)).toEqual(reports.map((_, i) => i + 1));
    expect(reports.map((r) => r.deltas?.['answer'] ?? '').join('')).toBe(sent);
  });

  it('keeps at most one publication in flight and never waits for the sink', async () => {
    const pending: Deferred<void>[] = [];
    const handed: ProgressReport[] = [];
    const slowSink: ProgressSink = {
      publish: (report) => {
        handed.push(report);
        const d = deferred();
        pending.push(d);
        return d.promise;
      },
    };
    const { throttle, scheduler } = setup(10, slowSink);
    throttle.offer({ deltas: { answer: 'a' } });
    await flushPromises();
    throttle.offer({ deltas: { answer: 'b' } });
    await scheduler.advance(500);
    throttle.offer({ deltas: { answer: 'c' } });
    await scheduler.advance(500);
    expect(handed).toHaveLength(1);

    pending[0]!.resolve();
    await flushPromises();
    expect(handed).toHaveLength(2);
    expect(handed[1]).toEqual({ seq: 2, deltas: { answer: 'bc' } });
  });

  it('survives a failing sink, logging once, and goes on publishing', async () => {
    let calls = 0;
    const failing: ProgressSink = {
      publish: async () => {
        calls++;
        if (calls <= 2) throw new Error('bus down');
      },
    };
    const { throttle, scheduler, logger } = setup(10, failing);
    for (let i = 0; i < 3; i++) {
      expect(() => throttle.offer({ deltas: { answer: 'x' } })).not.toThrow();
      await scheduler.advance(100);
    }
    expect(calls).toBe(3);
    expect(logger.lines.filter((l) => l.message === 'publishing step.progress failed')).toHaveLength(1);
  });

  it('drops text past the pending limit and says how much', async () => {
    const hold = deferred();
    const handed: ProgressReport[] = [];
    const { throttle, scheduler } = setup(10, {
      publish: (report) => (handed.push(report), handed.length === 1 ? hold.promise : Promise.resolve()),
    });
    throttle.offer({ deltas: { answer: 'first' } });
    await flushPromises();
    throttle.offer({ deltas: { answer: 'x'.repeat(80) } });
    throttle.offer({ deltas: { answer: 'y'.repeat(30) } });
    hold.resolve();
    await scheduler.advance(100);
    expect(handed[1]).toEqual({
      seq: 2,
      deltas: { answer: 'x'.repeat(80) + 'y'.repeat(20) },
      droppedChars: 10,
    });
  });

  it('ignores a status that is not JSON data, and malformed reports', async () => {
    const { throttle, reports, logger } = setup();
    throttle.offer({ status: 10n });
    throttle.offer(null as never);
    throttle.offer({ deltas: { answer: 42 as never } });
    await flushPromises();
    expect(reports).toEqual([]);
    expect(logger.lines.map((l) => l.message)).toContain('progress status is not JSON-serialisable; ignored');
  });
});
