import type { Envelope, StepCommandPayload, StepResultPayload } from '@multiagents/contracts';

/**
 * Where a worker of the orchestrator's own process hands a result: the orchestrator applies it as
 * it would one read off the bus. Rejects when it could not (the store refused the write, the
 * orchestrator is closing): the worker-manager then publishes the result on the bus instead.
 */
export type LocalResultSink = (result: Envelope<StepResultPayload>) => Promise<void>;

/** A slot of a local worker, held for one command while its transition is committed. */
export interface LocalSlot {
  /**
   * Runs `command` in this slot (the transition that sent it is committed). Never throws: every
   * way the attempt ends is a result, or nothing (a drain that gave up on it), and then the
   * command's redispatch deadline sends it on the bus. `started` is called when the attempt
   * starts here, and not when a drain sends the command on the bus instead.
   */
  run(command: Envelope<StepCommandPayload>, started?: () => void): void;
  /** Gives the slot back unused: the transition was not committed. */
  release(): void;
}

/**
 * Workers hosted in the orchestrator's process (the embedded mode, or an orchestrator given worker
 * modules): a command for one of them that has a free slot is run here at once instead of going
 * through the bus, and the results of what runs here come back the same way (eager dispatch, as
 * Temporal's eager activities). The run record says the command was sent either way, so nothing
 * is lost when this process dies with it: the orchestrators' redispatch deadline and recovery
 * sweep send it again on the bus, where any worker-manager takes it. One orchestrator per
 * worker-manager.
 */
export interface LocalWorkers {
  /**
   * Where the results of attempts run here go from now on, those of commands taken from the bus
   * too (the orchestrator, from its start to its close); undefined: on the bus again.
   */
  deliverResultsTo(sink: LocalResultSink | undefined): void;
  /** Holds a free slot of `worker` for one command, or undefined: not hosted here, none free, closing. */
  reserve(worker: string): LocalSlot | undefined;
  /** Whether an attempt of `commandId` runs here now: its result is late, not lost. */
  running(commandId: string): boolean;
}
