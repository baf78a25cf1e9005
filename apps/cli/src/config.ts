/** The CLI's settings from its environment. */
export interface CliConfig {
  /** MULTIAGENTS_ADDRESS: the orchestrator's gRPC address when `--address` is not given. */
  readonly address: string;
  /** True when `address` came from MULTIAGENTS_ADDRESS (not the default): error hints say where. */
  readonly addressFromEnvironment?: boolean;
  /** MULTIAGENTS_MONITOR_ADDRESS: the event-monitor's gRPC address when `--monitor-address` is not given. */
  readonly monitorAddress: string;
  /** True when `monitorAddress` came from MULTIAGENTS_MONITOR_ADDRESS. */
  readonly monitorAddressFromEnvironment?: boolean;
  /** MULTIAGENTS_TOKEN: bearer token (JWT) sent with every call when `--token` is not given. */
  readonly token?: string;
  /** MULTIAGENTS_TLS=true: use TLS (with the system's CAs unless a CA file is named). */
  readonly tls: boolean;
  /** MULTIAGENTS_TLS_CA: PEM file of the CAs that sign the server's certificate (implies TLS). */
  readonly tlsCaFile?: string;
  /** MULTIAGENTS_TLS_CLIENT_CERT and MULTIAGENTS_TLS_CLIENT_KEY: client certificate for mutual TLS. */
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  /** MULTIAGENTS_TLS_SERVER_NAME: the name to check the server's certificate against. */
  readonly tlsServerName?: string;
}

/** Where the CLI connects when neither `--address` nor MULTIAGENTS_ADDRESS says. */
export const DEFAULT_ADDRESS = '127.0.0.1:50051';
/** Where monitor commands connect when neither `--monitor-address` nor MULTIAGENTS_MONITOR_ADDRESS says. */
export const DEFAULT_MONITOR_ADDRESS = '127.0.0.1:50055';

function text(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

/** The only place the CLI reads its environment. */
export function loadCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const optional = (name: string, key: keyof CliConfig): Partial<CliConfig> => {
    const value = text(env, name);
    return value === undefined ? {} : { [key]: value };
  };
  const address = text(env, 'MULTIAGENTS_ADDRESS');
  const monitorAddress = text(env, 'MULTIAGENTS_MONITOR_ADDRESS');
  return {
    address: address ?? DEFAULT_ADDRESS,
    ...(address === undefined ? {} : { addressFromEnvironment: true }),
    monitorAddress: monitorAddress ?? DEFAULT_MONITOR_ADDRESS,
    ...(monitorAddress === undefined ? {} : { monitorAddressFromEnvironment: true }),
    tls: ['1', 'true', 'yes'].includes((text(env, 'MULTIAGENTS_TLS') ?? '').toLowerCase()),
    ...optional('MULTIAGENTS_TOKEN', 'token'),
    ...optional('MULTIAGENTS_TLS_CA', 'tlsCaFile'),
    ...optional('MULTIAGENTS_TLS_CLIENT_CERT', 'tlsCertFile'),
    ...optional('MULTIAGENTS_TLS_CLIENT_KEY', 'tlsKeyFile'),
    ...optional('MULTIAGENTS_TLS_SERVER_NAME', 'tlsServerName'),
  };
}
