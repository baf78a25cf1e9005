/** The CLI's settings from its environment. */
export interface CliConfig {
  /** MULTIAGENTS_ADDRESS: the orchestrator's gRPC address when `--address` is not given. */
  readonly address: string;
}

/** Where the CLI connects when neither `--address` nor MULTIAGENTS_ADDRESS says. */
export const DEFAULT_ADDRESS = '127.0.0.1:50051';

/** The only place the CLI reads its environment. */
export function loadCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const address = env['MULTIAGENTS_ADDRESS']?.trim();
  return { address: address === undefined || address === '' ? DEFAULT_ADDRESS : address };
}
