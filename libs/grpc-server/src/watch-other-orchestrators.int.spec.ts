/**
 * WatchWorkflow on one orchestrator replica sees at once what another replica writes (from the
 * lifecycle events, through a tail), with the store polling switched off so nothing else can
 * bring the change.
 */
import { connect } from '@multiagents/client';
import { RunState, type Run } from '@multiagents/contracts';
import { Orchestrator } from '@multiagents/core';
import { waitFor } from '@multiagents/testing';
import { startTestControlPlane } from './test-stack';

jest.setTimeout(20_000);

it('streams the changes another orchestrator writes to a watched run, without polling the store', async () => {
  const plane = await startTestControlPlane({ watchPollIntervalMs: 0 });
  const client = connect(plane.address, { timeoutMs: 5_000 });
  // Another replica over the same stores and bus: it moves the run with a signal.
  const other = new Orchestrator({
    bus: plane.stack.bus,
    runs: plane.stack.runs,
    definitions: plane.stack.definitions,
    timerPollIntervalMs: 0,
    lifecycleEvents: true,
  });
  try {
    plane.gate.open();
    const { txId } = await client.startWorkflow('gated', { orderId: 'm-1' });
    const seen: Run[] = [];
    const watching = (async () => {
      for await (const run of client.watchWorkflow(txId)) seen.push(run);
    })();
    await waitFor(() => seen.at(-1)?.state === RunState.Waiting, { timeoutMs: 10_000 });
    const written = await other.signal(txId, 'approved', { by: 'the other replica' });
    expect(written.state).toBe(RunState.Completed);
    await waitFor(() => seen.at(-1)?.state === RunState.Completed, {
      timeoutMs: 10_000,
      description: "the other replica's change reached the watch",
    });
    await watching; // the stream ends once the run is terminal
    expect(seen.at(-1)).toEqual(written);
    expect(plane.server.watchListeners).toBe(0);
  } finally {
    client.close();
    await other.close();
    await plane.close();
  }
});
