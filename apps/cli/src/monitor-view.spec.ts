import { EventType, RunState } from '@multiagents/contracts';
import { deadLetterTable, stuckRunTable, timelineTable, workerManagerTable } from './monitor-view';

describe('monitor views', () => {
  it('prints a timeline one line per event, with times from the start and the details that matter', () => {
    const lines = timelineTable([
      {
        version: 1,
        state: RunState.Running,
        time: 1_000,
        events: [{ type: EventType.WorkflowStarted, state: RunState.Running }],
      },
      {
        version: 2,
        state: RunState.Compensating,
        time: 2_500,
        events: [
          {
            type: EventType.StepFailed,
            state: RunState.Running,
            step: 'ship_order',
            attempt: 1,
            durationMs: 40,
            error: { code: 'CARRIER_REFUSED', message: 'no' },
          },
          { type: EventType.WorkflowCompensating, state: RunState.Compensating },
        ],
      },
    ]);
    expect(lines[0]).toMatch(/^VERSION\s+AT\s+STATE\s+EVENT\s+STEP\s+ATTEMPT\s+DETAILS$/);
    expect(lines[1]).toMatch(/^v1\s+\+0 ms\s+running\s+workflow\.started$/);
    expect(lines[2]).toMatch(
      /^v2\s+\+1\.5 s\s+running\s+step\.failed\s+ship_order\s+1\s+40 ms; CARRIER_REFUSED: no$/,
    );
    expect(lines[3]).toMatch(/^v2\s+\+1\.5 s\s+compensating\s+workflow\.compensating$/);
  });

  it('prints stuck runs, dead letters and worker-managers', () => {
    expect(
      stuckRunTable(
        [
          {
            txId: 'tx-1',
            workflowId: 'orders',
            state: RunState.Running,
            lastProgressAt: 0,
            thresholdMs: 60_000,
            detectedAt: 61_000,
            steps: ['charge'],
            version: 3,
          },
        ],
        125_000,
      )[1],
    ).toMatch(/^tx-1\s+orders\s+running\s+2m 05s\s+1m 00s\s+charge$/);
    expect(
      deadLetterTable([
        {
          id: '1-0',
          topic: 'events',
          group: 'event-monitor',
          error: 'bad_transition: x',
          deliveryCount: 1,
          deadAt: 0,
          sizeBytes: 9,
        },
      ])[1],
    ).toMatch(/^events\s+1-0\s+event-monitor\s+1\s+1970-01-01T00:00:00\.000Z\s+bad_transition: x$/);
    expect(
      workerManagerTable(
        [
          {
            managerId: 'wm-1',
            workers: ['a', 'b'],
            capacity: 8,
            inFlight: 2,
            seenAt: 0,
            live: false,
            details: {},
            lingering: 1,
          },
        ],
        3_000,
      ),
    ).toEqual([
      expect.stringMatching(/^MANAGER\s+STATUS\s+IN FLIGHT\s+LINGERING\s+CAPACITY\s+LAST SEEN\s+WORKERS$/),
      expect.stringMatching(/^wm-1\s+gone\s+2\s+1\s+8\s+3\.0 s ago\s+a,b$/),
    ]);
  });
});
