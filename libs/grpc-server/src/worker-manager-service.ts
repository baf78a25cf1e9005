/**
 * The WorkerManagerService handlers, served by the process that hosts the WorkerManager (the
 * orchestrator in the embedded mode; the worker-manager service with the Redis or NATS backend).
 */
import type * as pb from '@multiagents/proto';
import type { WorkerManager } from '@multiagents/worker-sdk';
import { unaryCall, type HandlerContext } from './call-handlers';
import { workerInfoToProto } from './mappers';
import { MAX_DRAIN_TIMEOUT_MS, ValidationError } from '@multiagents/contracts';

/** The WorkerManager methods the API serves. */
export type WorkerManagerApi = Pick<WorkerManager, 'managerId' | 'workers' | 'close' | 'drainTimeoutMs'>;

/** Headroom for answering after the drain timeout (aborted handlers settle, results publish). */
const DRAIN_ANSWER_MARGIN_MS = 5_000;

/**
 * How long a Drain call may take: a drain legitimately lasts its timeout (the request's, else the
 * manager's own configured one), so it is not cut at the usual call limit.
 */
export function drainCallLimitMs(
  requested: number | undefined,
  configured: number,
  maxCallMs: number,
): number {
  return Math.max(maxCallMs, (requested ?? configured) + DRAIN_ANSWER_MARGIN_MS);
}

/**
 * WorkerManagerService over a {@link WorkerManagerApi}. `onDrain` runs when a drain begins (the
 * server turns its health NOT_SERVING there).
 */
export class WorkerManagerService {
  readonly implementation: pb.WorkerManagerServiceServer;
  private draining = false;

  constructor(manager: WorkerManagerApi, context: HandlerContext, onDrain: () => void) {
    this.implementation = {
      listWorkers: unaryCall(context, 'ListWorkers', async () => ({
        managerId: manager.managerId,
        workers: manager.workers().map(workerInfoToProto),
        draining: this.draining,
      })),
      drain: unaryCall(
        context,
        'Drain',
        async (req: pb.DrainRequest) => {
          if (req.drainTimeoutMs !== undefined && req.drainTimeoutMs > MAX_DRAIN_TIMEOUT_MS) {
            throw new ValidationError('invalid request', [
              `drain_timeout_ms must be at most ${MAX_DRAIN_TIMEOUT_MS}`,
            ]);
          }
          if (!this.draining) {
            this.draining = true;
            onDrain();
          }
          await manager.close(req.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: req.drainTimeoutMs });
          return { managerId: manager.managerId, workers: manager.workers().map(workerInfoToProto) };
        },
        (req) => drainCallLimitMs(req.drainTimeoutMs, manager.drainTimeoutMs, context.maxCallMs),
      ),
    };
  }

  /** True once a drain has begun. */
  get isDraining(): boolean {
    return this.draining;
  }
}
