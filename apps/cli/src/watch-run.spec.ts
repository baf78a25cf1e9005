import type { MultiAgentsClient } from '@multiagents/client';
import {
  EventType,
  RunState,
  type Envelope,
  type Run,
  type StepProgressPayload,
} from '@multiagents/contracts';
import type { CliIo } from './cli-io';
import { watchRun, type ProgressFeed } from './watch-run';

const running: Run = {
  txId: 't-1',
  workflowId: 'answer',
  workflowVersion: 1,
  state: RunState.Running,
  input: {},
  context: {},
  steps: {
    draft: {
      name: 'draft',
      status: 'running',
      attempt: 1,
      attempts: [{ attempt: 1, startedAt: 1_000 }],
      startedAt: 1_000,
    },
  },
  createdAt: 1_000,
  updatedAt: 1_000,
  signals: {},
  completedCount: 0,
  outputCount: 0,
};

const completed: Run = {
  ...running,
  state: RunState.Completed,
  steps: {
    draft: {
      name: 'draft',
      status: 'completed',
      attempt: 1,
      attempts: [{ attempt: 1, startedAt: 1_000, endedAt: 1_500, outcome: 'completed' }],
      startedAt: 1_000,
      endedAt: 1_500,
      completedSeq: 1,
    },
  },
  updatedAt: 1_500,
  endedAt: 1_500,
  completedCount: 1,
};

function progress(seq: number, payload: Partial<StepProgressPayload>): Envelope {
  return {
    id: `p-${seq}`,
    type: EventType.StepProgress,
    txId: 't-1',
    workflowId: 'answer',
    step: 'draft',
    attempt: 1,
    time: 1_000 + seq,
    headers: {},
    payload: { commandId: 't-1:draft:1', seq, ...payload },
  };
}

function capture(tty = false): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const io = {
    stdout: { write: (text: string) => (out += text), isTTY: tty },
    stderr: { write: (text: string) => (err += text) },
  } as unknown as CliIo;
  return { io, out: () => out, err: () => err };
}

/**
 * A client whose watch shows the run running, then — once `release` resolves (the feed has
 * delivered what the test wants seen while the run runs) — completed. Records when it was called.
 */
function client(release: Promise<void>, calls: string[]): MultiAgentsClient {
  return {
    async *watchWorkflow() {
      calls.push('watchWorkflow');
      yield running;
      await release;
      yield completed;
    },
  } as unknown as MultiAgentsClient;
}

/** A feed that opens, yields `events`, then says it delivered them and waits to be aborted. */
function feed(events: Envelope[], calls: string[], delivered: () => void): ProgressFeed {
  return ({ signal, onOpen }) =>
    (async function* () {
      calls.push('feed');
      onOpen();
      for (const event of events) yield event;
      delivered();
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    })();
}

describe('watchRun --progress', () => {
  it('opens the monitor stream first, prints deltas in seq order, drops a late one and says what was missed', async () => {
    const calls: string[] = [];
    let delivered!: () => void;
    const release = new Promise<void>((resolve) => (delivered = resolve));
    const { io, out } = capture();
    const events = [
      progress(1, { deltas: { answer: 'Hel' } }),
      progress(2, { deltas: { answer: 'lo\nwor' } }),
      progress(1, { deltas: { answer: 'Hel' } }), // late duplicate
      progress(5, { deltas: { answer: 'ld' }, status: { phase: 'writing' }, droppedChars: 7 }),
      { ...progress(6, {}), type: EventType.WorkerHeartbeat }, // not progress: ignored
    ];
    const last = await watchRun(client(release, calls), 't-1', io, {
      json: false,
      progress: feed(events, calls, delivered),
    });
    expect(last?.state).toBe(RunState.Completed);
    expect(calls).toEqual(['feed', 'watchWorkflow']);
    const lines = out().trimEnd().split('\n');
    expect(lines.filter((l) => l.startsWith('  draft'))).toEqual([
      '  draft answer +"Hel"',
      '  draft answer +"lo\\nwor"',
      '  draft … 2 progress event(s) missed',
      '  draft answer +"ld"',
      '  draft status {"phase":"writing"}',
      '  draft … 7 streamed characters dropped (the bus could not keep up)',
    ]);
    expect(lines.at(-1)).toMatch(/^run t-1 ended completed/);
  });

  it('prints progress as JSON lines of their own type next to the runs with --json', async () => {
    const calls: string[] = [];
    let delivered!: () => void;
    const release = new Promise<void>((resolve) => (delivered = resolve));
    const { io, out } = capture();
    await watchRun(client(release, calls), 't-1', io, {
      json: true,
      progress: feed([progress(1, { deltas: { answer: 'Hi' } })], calls, delivered),
    });
    const objects = out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    // The monitor's stream and the orchestrator's are separate: only the run's order is fixed.
    expect(objects.filter((o) => o['type'] === undefined).map((o) => o['state'])).toEqual([
      'running',
      'completed',
    ]);
    expect(objects.filter((o) => o['type'] !== undefined)).toEqual([
      {
        type: 'step.progress',
        txId: 't-1',
        step: 'draft',
        attempt: 1,
        commandId: 't-1:draft:1',
        seq: 1,
        deltas: { answer: 'Hi' },
      },
    ]);
  });

  it('shows the tail of the streamed text under the steps in the live view', async () => {
    const calls: string[] = [];
    let delivered!: () => void;
    const release = new Promise<void>((resolve) => (delivered = resolve));
    const { io, out } = capture(true);
    await watchRun(client(release, calls), 't-1', io, {
      json: false,
      progress: feed(
        [progress(1, { deltas: { answer: 'x'.repeat(100) } }), progress(2, { deltas: { answer: 'END' } })],
        calls,
        delivered,
      ),
    });
    expect(out()).toContain(`  draft answer: ${'x'.repeat(69)}END`);
  });

  it('goes on watching the run when the monitor cannot be reached, and says why', async () => {
    const { io, out, err } = capture();
    const failing: ProgressFeed = () =>
      (async function* () {
        await Promise.resolve();
        throw new Error('no event-monitor at 127.0.0.1:1');
      })();
    const last = await watchRun(client(Promise.resolve(), []), 't-1', io, { json: false, progress: failing });
    expect(last?.state).toBe(RunState.Completed);
    expect(err()).toContain(
      "progress is not shown: the event-monitor's stream failed (no event-monitor at 127.0.0.1:1)",
    );
    expect(out()).toMatch(/run t-1 ended completed/);
  });
});
