import type { Run } from '@multiagents/contracts';

/** The orchestrator calls the dashboard's actions make (MultiAgentsClient has them all). */
export interface DashboardActions {
  cancelWorkflow(txId: string, reason?: string): Promise<Run>;
  signalWorkflow(txId: string, name: string, payload?: unknown): Promise<Run>;
  retryStep(txId: string, step: string): Promise<Run>;
  skipStep(txId: string, step: string, output?: unknown): Promise<Run>;
  resumeCompensation(txId: string): Promise<Run>;
}
