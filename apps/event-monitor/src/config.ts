import { positiveIntegerVariable, timerDelayVariable } from '@multiagents/core';
import { readFileSync } from 'node:fs';
import { parseServiceConfig, type ServiceConfig } from '@multiagents/backends';
import type { ClientTlsOptions } from '@multiagents/client';
import { ValidationError } from '@multiagents/contracts';
import { parseControlPlaneSecurity, type ControlPlaneSecurity } from '@multiagents/grpc-server';

/** Default GRPC_PORT of the event-monitor (the orchestrator has 50051, the worker-manager 50052). */
export const DEFAULT_MONITOR_GRPC_PORT = 50055;
/** Default HTTP_PORT: the dashboard, /healthz, /readyz, /stats. */
export const DEFAULT_MONITOR_HTTP_PORT = 8090;
/** Default GRPC_MAX_MESSAGE_BYTES: gRPC's own default, 4 MiB. */
export const DEFAULT_GRPC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The event-monitor's settings: SPEC §7 plus its watchdog, retention and delivery tuning. */
export interface EventMonitorConfig extends ServiceConfig {
  /** HTTP_PORT (default {@link DEFAULT_MONITOR_HTTP_PORT}). */
  readonly httpPort: number;
  readonly grpcHost: string;
  readonly httpHost: string;
  /** TLS, authentication and reflection of the gRPC API (MULTIAGENTS_TLS_*, MULTIAGENTS_AUTH_*, GRPC_REFLECTION). */
  readonly security: ControlPlaneSecurity;
  /** GRPC_MAX_MESSAGE_BYTES. */
  readonly grpcMaxMessageBytes: number;
  /** MULTIAGENTS_VISIBILITY_TIMEOUT_MS: an event a dead replica held goes to another after this long. */
  readonly visibilityTimeoutMs?: number;
  /** MULTIAGENTS_MAX_DELIVERIES: deliveries of a failing event before it is dead-lettered. */
  readonly maxDeliveries?: number;
  /** MULTIAGENTS_MONITOR_RETENTION_MS: how long a run's timeline is kept after its last event. */
  readonly timelineRetentionMs?: number;
  /** MULTIAGENTS_STUCK_THRESHOLD_MS: no progress for longer than this makes a run stuck. */
  readonly stuckThresholdMs?: number;
  /** MULTIAGENTS_STUCK_THRESHOLDS: `<workflowId>=<ms>,…`, per-workflow thresholds. */
  readonly stuckThresholdsMs: Readonly<Record<string, number>>;
  /** MULTIAGENTS_STUCK_SCAN_INTERVAL_MS: how often the watchdog reads the live runs. */
  readonly stuckScanIntervalMs?: number;
  /** MULTIAGENTS_WORKERS_POLL_INTERVAL_MS: how often the worker registry is read. */
  readonly workersPollIntervalMs?: number;
  /** MULTIAGENTS_ORCHESTRATOR_ADDRESS (`host:port`): where the dashboard's actions go; none without it. */
  readonly orchestratorAddress?: string;
  /** MULTIAGENTS_ORCHESTRATOR_TOKEN: the bearer token the dashboard's actions carry. */
  readonly orchestratorToken?: string;
  /**
   * TLS towards the orchestrator (its API serves TLS): MULTIAGENTS_ORCHESTRATOR_TLS=true (the
   * system's CAs), MULTIAGENTS_ORCHESTRATOR_TLS_CA (a CA file), _TLS_CLIENT_CERT and
   * _TLS_CLIENT_KEY (mutual TLS), _TLS_SERVER_NAME; the files are read at start.
   */
  readonly orchestratorTls?: ClientTlsOptions;
  /** MULTIAGENTS_JAEGER_URL: Jaeger UI base address; the run page links `<url>/trace/<traceId>`. */
  readonly jaegerUrl?: string;
}

function orchestratorAddress(env: NodeJS.ProcessEnv, problems: string[]): string | undefined {
  const raw = env['MULTIAGENTS_ORCHESTRATOR_ADDRESS']?.trim();
  if (raw === undefined || raw === '') return undefined;
  if (!/^[^\s/:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(raw)) {
    problems.push(`MULTIAGENTS_ORCHESTRATOR_ADDRESS=${raw}: must be host:port`);
    return undefined;
  }
  return raw;
}

/** The TLS settings of the dashboard's orchestrator client, its files read now (a problem each). */
function orchestratorTls(env: NodeJS.ProcessEnv, problems: string[]): ClientTlsOptions | undefined {
  const value = (name: string): string | undefined => env[name]?.trim() || undefined;
  const read = (name: string): Buffer | undefined => {
    const path = value(name);
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      problems.push(
        `${name}=${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      );
      return undefined;
    }
  };
  const on = value('MULTIAGENTS_ORCHESTRATOR_TLS');
  if (on !== undefined && !['true', 'false'].includes(on.toLowerCase()))
    problems.push(`MULTIAGENTS_ORCHESTRATOR_TLS=${on}: must be true or false`);
  const ca = read('MULTIAGENTS_ORCHESTRATOR_TLS_CA');
  const cert = read('MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_CERT');
  const key = read('MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_KEY');
  const serverName = value('MULTIAGENTS_ORCHESTRATOR_TLS_SERVER_NAME');
  if (
    (value('MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_CERT') === undefined) !==
    (value('MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_KEY') === undefined)
  )
    problems.push(
      'MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_CERT and MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_KEY go together',
    );
  const given = ca !== undefined || cert !== undefined || key !== undefined || serverName !== undefined;
  if (on?.toLowerCase() === 'false' && given)
    problems.push('MULTIAGENTS_ORCHESTRATOR_TLS=false, yet MULTIAGENTS_ORCHESTRATOR_TLS_* files are given');
  if (!given && on?.toLowerCase() !== 'true') return undefined;
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    ...(serverName === undefined ? {} : { serverName }),
  };
}

function jaegerUrl(env: NodeJS.ProcessEnv, problems: string[]): string | undefined {
  const raw = env['MULTIAGENTS_JAEGER_URL']?.trim();
  if (raw === undefined || raw === '') return undefined;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    problems.push(`MULTIAGENTS_JAEGER_URL=${raw}: must be an http(s) address`);
    return undefined;
  }
  return raw.replace(/\/+$/, '');
}

function thresholds(env: NodeJS.ProcessEnv, problems: string[]): Record<string, number> {
  const raw = env['MULTIAGENTS_STUCK_THRESHOLDS'];
  const out: Record<string, number> = {};
  if (raw === undefined || raw.trim() === '') return out;
  for (const part of raw
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0)) {
    const at = part.lastIndexOf('=');
    const workflowId = at > 0 ? part.slice(0, at).trim() : '';
    const value = at > 0 ? Number(part.slice(at + 1)) : Number.NaN;
    if (workflowId === '' || !Number.isSafeInteger(value) || value < 1) {
      problems.push(`MULTIAGENTS_STUCK_THRESHOLDS: "${part}" must be <workflowId>=<positive ms>`);
      continue;
    }
    out[workflowId] = value;
  }
  return out;
}

/** The only place the event-monitor reads its environment. Throws listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): EventMonitorConfig {
  const problems: string[] = [];
  const report = (problem: string): number => problems.push(problem);
  const collect = <T>(check: () => T): T | undefined => {
    try {
      return check();
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      problems.push(...err.problems);
      return undefined;
    }
  };
  const base = collect(() => parseServiceConfig(env, { grpcPort: DEFAULT_MONITOR_GRPC_PORT }));
  // Read from the variable itself: a problem elsewhere in the shared settings leaves `base` unset.
  if ((env['MULTIAGENTS_BACKEND'] || 'memory') === 'memory') {
    problems.push(
      'MULTIAGENTS_BACKEND=memory: a separate event-monitor needs a shared backend (redis or nats)',
    );
  }
  const security = collect(() => parseControlPlaneSecurity(env, { checkFiles: true }));
  const rawMaxBytes = env['GRPC_MAX_MESSAGE_BYTES'];
  let grpcMaxMessageBytes = DEFAULT_GRPC_MAX_MESSAGE_BYTES;
  if (rawMaxBytes !== undefined && rawMaxBytes !== '') {
    grpcMaxMessageBytes = Number(rawMaxBytes);
    if (
      !Number.isSafeInteger(grpcMaxMessageBytes) ||
      grpcMaxMessageBytes < 1024 ||
      grpcMaxMessageBytes > 1024 ** 3
    ) {
      problems.push(`GRPC_MAX_MESSAGE_BYTES=${rawMaxBytes}: must be an integer from 1024 to ${1024 ** 3}`);
    }
  }
  const optional = {
    visibilityTimeoutMs: timerDelayVariable(env, 'MULTIAGENTS_VISIBILITY_TIMEOUT_MS', report),
    maxDeliveries: positiveIntegerVariable(env, 'MULTIAGENTS_MAX_DELIVERIES', report),
    timelineRetentionMs: positiveIntegerVariable(env, 'MULTIAGENTS_MONITOR_RETENTION_MS', report),
    stuckThresholdMs: positiveIntegerVariable(env, 'MULTIAGENTS_STUCK_THRESHOLD_MS', report),
    stuckScanIntervalMs: timerDelayVariable(env, 'MULTIAGENTS_STUCK_SCAN_INTERVAL_MS', report),
    workersPollIntervalMs: timerDelayVariable(env, 'MULTIAGENTS_WORKERS_POLL_INTERVAL_MS', report),
    orchestratorAddress: orchestratorAddress(env, problems),
    orchestratorToken: env['MULTIAGENTS_ORCHESTRATOR_TOKEN'] || undefined,
    orchestratorTls: orchestratorTls(env, problems),
    jaegerUrl: jaegerUrl(env, problems),
  };
  const stuckThresholdsMs = thresholds(env, problems);
  if (problems.length > 0) throw new ValidationError('invalid event-monitor configuration', problems);
  const config = base as ServiceConfig;
  const sec = security as ControlPlaneSecurity;
  return {
    ...config,
    httpPort: config.httpPort ?? DEFAULT_MONITOR_HTTP_PORT,
    grpcHost: sec.grpcHost,
    httpHost: sec.httpHost,
    security: sec,
    grpcMaxMessageBytes,
    stuckThresholdsMs,
    ...Object.fromEntries(Object.entries(optional).filter(([, value]) => value !== undefined)),
  };
}
