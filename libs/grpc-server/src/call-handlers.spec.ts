import { status } from '@grpc/grpc-js';
import { GetWorkflowRequest, OrchestratorServiceService } from '@multiagents/proto';
import { MalformedRequest, remainingMs, tolerantService } from './call-handlers';

describe('call handlers', () => {
  it('decodes good bytes and turns bad bytes into a MalformedRequest, not a throw', () => {
    const service = tolerantService(OrchestratorServiceService);
    const good = Buffer.from(GetWorkflowRequest.encode({ txId: 't-1' }).finish());
    expect(service.getWorkflow.requestDeserialize(good)).toEqual({ txId: 't-1' });
    const bad: unknown = service.getWorkflow.requestDeserialize(
      Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
    );
    expect(bad).toBeInstanceOf(MalformedRequest);
    expect((bad as MalformedRequest).toStatus()).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(
        /^malformed request to \/multiagents\.v1\.OrchestratorService\/GetWorkflow/,
      ),
    });
    // Everything else of the definition is untouched.
    expect(service.getWorkflow.path).toBe(OrchestratorServiceService.getWorkflow.path);
    expect(service.watchWorkflow.responseStream).toBe(true);
  });

  it('caps the time left by the server limit, with or without a client deadline', () => {
    expect(remainingMs(Number.POSITIVE_INFINITY, 30_000)).toBe(30_000);
    const soon = remainingMs(new Date(Date.now() + 1_000), 30_000);
    expect(soon).toBeGreaterThan(900);
    expect(soon).toBeLessThanOrEqual(1_000);
    expect(remainingMs(Date.now() + 60_000, 5_000)).toBe(5_000);
    expect(remainingMs(Date.now() - 10, 5_000)).toBe(0);
  });
});
