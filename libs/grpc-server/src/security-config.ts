/**
 * The control plane's security settings from an environment that an app's config module passes
 * in (libraries never read the process environment themselves). One parser for every service, so the variable
 * names and their meaning cannot drift between the orchestrator and the worker-manager.
 */
import { ValidationError } from '@multiagents/contracts';
import { booleanVariable, type Environment } from '@multiagents/core';
import { checkAuthOptions, isRole, type AuthOptions, type JwtOptions, type Role } from './authorizer';
import { readFileSync } from 'node:fs';
import { checkServerTlsFiles, type ServerTlsOptions } from './tls-files';

/** What {@link parseControlPlaneSecurity} reads, for the README and error messages. */
export const SECURITY_VARIABLES = Object.freeze([
  'GRPC_HOST',
  'HTTP_HOST',
  'GRPC_REFLECTION',
  'MULTIAGENTS_TLS_CERT',
  'MULTIAGENTS_TLS_KEY',
  'MULTIAGENTS_TLS_CLIENT_CA',
  'MULTIAGENTS_TLS_RELOAD_INTERVAL_MS',
  'MULTIAGENTS_AUTH_JWT_SECRET',
  'MULTIAGENTS_AUTH_JWKS_FILE',
  'MULTIAGENTS_AUTH_JWKS_URL',
  'MULTIAGENTS_AUTH_JWT_AUDIENCE',
  'MULTIAGENTS_AUTH_JWT_ISSUER',
  'MULTIAGENTS_AUTH_JWT_ALGORITHMS',
  'MULTIAGENTS_AUTH_ROLES_CLAIM',
  'MULTIAGENTS_AUTH_WORKFLOWS_CLAIM',
  'MULTIAGENTS_AUTH_CERT_ROLES',
]);

/** The security settings of one service. */
export interface ControlPlaneSecurity {
  /** Interface of the gRPC API: GRPC_HOST, else 0.0.0.0 with authentication and 127.0.0.1 without. */
  readonly grpcHost: string;
  /** Interface of the HTTP health port: HTTP_HOST, with the same default as GRPC_HOST. */
  readonly httpHost: string;
  /** GRPC_REFLECTION (default true). */
  readonly reflection: boolean;
  readonly tls?: ServerTlsOptions;
  readonly auth?: AuthOptions;
}

const ALL_INTERFACES = '0.0.0.0';
const LOOPBACK = '127.0.0.1';

function text(env: Environment, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function list(env: Environment, name: string): string[] | undefined {
  const value = text(env, name);
  if (value === undefined) return undefined;
  return value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}

/**
 * Reads GRPC_HOST, HTTP_HOST, GRPC_REFLECTION, MULTIAGENTS_TLS_* and MULTIAGENTS_AUTH_* (see
 * {@link SECURITY_VARIABLES} and the README's Security section). Authentication is on when a JWT
 * key source or certificate roles are set. With `checkFiles`, the TLS files and the JWKS file are
 * read and checked too (services do this at start; a bad file is a configuration error). Throws a
 * ValidationError listing every problem; secret values never appear in it.
 *
 * @example
 * const security = parseControlPlaneSecurity(env);
 * new ControlPlaneServer({ ...security, host: security.grpcHost, orchestrator, port });
 */
export function parseControlPlaneSecurity(
  env: Environment,
  options: { readonly checkFiles?: boolean } = {},
): ControlPlaneSecurity {
  const problems: string[] = [];

  const certFile = text(env, 'MULTIAGENTS_TLS_CERT');
  const keyFile = text(env, 'MULTIAGENTS_TLS_KEY');
  const clientCaFile = text(env, 'MULTIAGENTS_TLS_CLIENT_CA');
  const rawReload = text(env, 'MULTIAGENTS_TLS_RELOAD_INTERVAL_MS');
  let tls: ServerTlsOptions | undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push('MULTIAGENTS_TLS_CERT and MULTIAGENTS_TLS_KEY go together');
  } else if (certFile !== undefined && keyFile !== undefined) {
    let reloadIntervalMs: number | undefined;
    if (rawReload !== undefined) {
      reloadIntervalMs = Number(rawReload);
      if (
        !Number.isSafeInteger(reloadIntervalMs) ||
        reloadIntervalMs < 100 ||
        reloadIntervalMs > 86_400_000
      ) {
        problems.push(
          `MULTIAGENTS_TLS_RELOAD_INTERVAL_MS=${rawReload}: must be an integer from 100 to 86400000`,
        );
      }
    }
    tls = {
      certFile,
      keyFile,
      ...(clientCaFile === undefined ? {} : { clientCaFile }),
      ...(reloadIntervalMs === undefined ? {} : { reloadIntervalMs }),
    };
  }
  if (clientCaFile !== undefined && tls === undefined && certFile === undefined) {
    problems.push(
      'MULTIAGENTS_TLS_CLIENT_CA needs MULTIAGENTS_TLS_CERT and MULTIAGENTS_TLS_KEY (mutual TLS is TLS first)',
    );
  }

  const secret = text(env, 'MULTIAGENTS_AUTH_JWT_SECRET');
  const jwksFile = text(env, 'MULTIAGENTS_AUTH_JWKS_FILE');
  const jwksUrl = text(env, 'MULTIAGENTS_AUTH_JWKS_URL');
  const audience = list(env, 'MULTIAGENTS_AUTH_JWT_AUDIENCE');
  const issuer = list(env, 'MULTIAGENTS_AUTH_JWT_ISSUER');
  const algorithms = list(env, 'MULTIAGENTS_AUTH_JWT_ALGORITHMS');
  const rolesClaim = text(env, 'MULTIAGENTS_AUTH_ROLES_CLAIM');
  const workflowsClaim = text(env, 'MULTIAGENTS_AUTH_WORKFLOWS_CLAIM');
  let jwt: JwtOptions | undefined;
  if (secret !== undefined || jwksFile !== undefined || jwksUrl !== undefined) {
    jwt = {
      ...(secret === undefined ? {} : { secret: Buffer.from(secret, 'utf8') }),
      ...(jwksFile === undefined ? {} : { jwksFile }),
      ...(jwksUrl === undefined ? {} : { jwksUrl }),
      audience: audience ?? [],
      ...(issuer === undefined ? {} : { issuer }),
      ...(algorithms === undefined ? {} : { algorithms }),
      ...(rolesClaim === undefined ? {} : { rolesClaim }),
      ...(workflowsClaim === undefined ? {} : { workflowsClaim }),
    };
  } else if (audience !== undefined || issuer !== undefined || algorithms !== undefined) {
    problems.push(
      'MULTIAGENTS_AUTH_JWT_* is set but no key is: set MULTIAGENTS_AUTH_JWT_SECRET, MULTIAGENTS_AUTH_JWKS_FILE or MULTIAGENTS_AUTH_JWKS_URL',
    );
  }

  const certificateRoles: Record<string, Role> = {};
  for (const entry of list(env, 'MULTIAGENTS_AUTH_CERT_ROLES') ?? []) {
    const at = entry.lastIndexOf('=');
    const subject = entry.slice(0, at).trim();
    const role = entry.slice(at + 1).trim();
    if (at <= 0 || !isRole(role)) {
      problems.push(`MULTIAGENTS_AUTH_CERT_ROLES: "${entry}" must be <certificate CN>=reader|operator|admin`);
    } else {
      certificateRoles[subject] = role;
    }
  }
  const hasCertificateRoles = Object.keys(certificateRoles).length > 0;
  let auth: AuthOptions | undefined;
  if (jwt !== undefined || hasCertificateRoles) {
    auth = { ...(jwt === undefined ? {} : { jwt }), ...(hasCertificateRoles ? { certificateRoles } : {}) };
    problems.push(
      ...checkAuthOptions(auth).map((problem) =>
        problem
          .replace('the JWT secret is', 'MULTIAGENTS_AUTH_JWT_SECRET is')
          .replace(
            'JWT verification needs an audience',
            'MULTIAGENTS_AUTH_JWT_AUDIENCE is required with JWT authentication',
          )
          .replace(
            'JWT verification needs exactly one of a shared secret, a JWKS file or a JWKS URL',
            'set exactly one of MULTIAGENTS_AUTH_JWT_SECRET, MULTIAGENTS_AUTH_JWKS_FILE and MULTIAGENTS_AUTH_JWKS_URL',
          ),
      ),
    );
    if (hasCertificateRoles && clientCaFile === undefined) {
      problems.push('MULTIAGENTS_AUTH_CERT_ROLES needs mutual TLS: set MULTIAGENTS_TLS_CLIENT_CA');
    }
  }

  const reflection = booleanVariable(env, 'GRPC_REFLECTION', true);
  if (reflection === undefined) {
    problems.push(`GRPC_REFLECTION=${text(env, 'GRPC_REFLECTION')?.toLowerCase()}: must be true or false`);
  }

  if (options.checkFiles === true) {
    if (tls !== undefined) problems.push(...checkServerTlsFiles(tls).map((p) => `MULTIAGENTS_TLS_*: ${p}`));
    if (jwksFile !== undefined) {
      const problem = jwksFileProblem(jwksFile);
      if (problem !== undefined) problems.push(`MULTIAGENTS_AUTH_JWKS_FILE: ${problem}`);
    }
  }

  // Safe default (SPEC §6): an open API is reachable from this machine only, unless asked.
  const defaultHost = auth === undefined ? LOOPBACK : ALL_INTERFACES;
  const grpcHost = text(env, 'GRPC_HOST') ?? defaultHost;
  const httpHost = text(env, 'HTTP_HOST') ?? defaultHost;

  if (problems.length > 0) throw new ValidationError('invalid security configuration', problems);
  return {
    grpcHost,
    httpHost,
    reflection: reflection ?? true,
    ...(tls === undefined ? {} : { tls }),
    ...(auth === undefined ? {} : { auth }),
  };
}

function jwksFileProblem(file: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === undefined ? `${file} is not JSON` : `cannot read ${file}: ${code}`;
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  return Array.isArray(keys) ? undefined : `${file} is not a JSON Web Key Set (no "keys" list)`;
}
