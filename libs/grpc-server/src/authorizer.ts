/**
 * Authentication and authorisation of every control-plane call, in one place (SPEC §6, §10): who
 * is calling (a bearer JWT, or the mTLS client certificate), which role each method needs, and
 * which workflows a caller may touch. The server applies it as a grpc-js interceptor
 * ({@link authorizationInterceptor}), before any handler runs.
 */
import { readFile } from 'node:fs/promises';
import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';
import { PermissionDeniedError, UnauthenticatedError, ValidationError } from '@multiagents/contracts';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JSONWebKeySet,
} from 'jose';

/** The roles of SPEC §6; each implies the ones before it (admin ⊃ operator ⊃ reader). */
export const Role = { Reader: 'reader', Operator: 'operator', Admin: 'admin' } as const;
/** One of {@link Role}'s values. */
export type Role = (typeof Role)[keyof typeof Role];

const RANK: Readonly<Record<Role, number>> = { reader: 1, operator: 2, admin: 3 };

/** True when `value` names a role. */
export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && Object.hasOwn(RANK, value);
}

/** Who is calling, once authenticated. */
export interface Principal {
  /** The JWT `sub`, or the client certificate's subject CN. */
  readonly subject: string;
  /** The highest role granted. */
  readonly role: Role;
  /** When set, the only workflow ids this caller may touch. */
  readonly workflows?: ReadonlySet<string>;
  /** How the caller proved who it is. */
  readonly via: 'jwt' | 'mtls';
  /** When its token stops being accepted (ms since the epoch, clock tolerance included); JWT only. */
  readonly expiresAt?: number;
}

/** Bearer JWT verification (jose). */
export interface JwtOptions {
  /** Shared HS256 secret (at least 32 bytes). */
  readonly secret?: Uint8Array;
  /** A JWKS file with the public keys (RS256, ES256…); read again every `jwksReloadIntervalMs`. */
  readonly jwksFile?: string;
  /** A JWKS URL (fetched and cached by jose, refetched when a token names an unknown `kid`). */
  readonly jwksUrl?: string;
  /** Accepted `aud` (required: a token minted for another service must not work here). */
  readonly audience: string | readonly string[];
  /** Accepted `iss`; unchecked when absent. */
  readonly issuer?: string | readonly string[];
  /** Algorithms accepted with JWKS keys; HS256 is the only one with a secret. */
  readonly algorithms?: readonly string[];
  /** Claim holding the role (a string or a list; the highest counts). */
  readonly rolesClaim?: string;
  /** Claim holding the workflow ids the token is limited to; absent means all workflows. */
  readonly workflowsClaim?: string;
  /** Clock skew tolerated on exp and nbf, in seconds. */
  readonly clockToleranceSec?: number;
  readonly jwksReloadIntervalMs?: number;
}

/** Options of {@link Authorizer}. */
export interface AuthOptions {
  readonly jwt?: JwtOptions;
  /**
   * Roles of mTLS client certificates by subject CN (`*`: any certificate the client CA signed).
   * Used when a call carries no bearer token.
   */
  readonly certificateRoles?: Readonly<Record<string, Role>>;
}

/** {@link JwtOptions} after defaults. */
type ResolvedJwtOptions = JwtOptions &
  Required<
    Pick<
      JwtOptions,
      'algorithms' | 'rolesClaim' | 'workflowsClaim' | 'clockToleranceSec' | 'jwksReloadIntervalMs'
    >
  >;

/** Defaults of {@link JwtOptions}. */
export const DEFAULT_JWT_OPTIONS = Object.freeze({
  algorithms: Object.freeze(['RS256', 'ES256']),
  rolesClaim: 'roles',
  workflowsClaim: 'workflows',
  clockToleranceSec: 30,
  jwksReloadIntervalMs: 60_000,
});

/** What a method touches, for workflow-limited callers. */
export type WorkflowScope =
  | { readonly kind: 'none' }
  /** Not about one workflow: refused to workflow-limited callers unless `readOnly`. */
  | { readonly kind: 'global'; readonly readOnly: boolean }
  /** The request names the workflow. */
  | { readonly kind: 'workflow'; readonly workflowIdOf: (request: unknown) => string | undefined }
  /** The request names a run; its workflow is looked up. */
  | { readonly kind: 'run'; readonly txIdOf: (request: unknown) => string | undefined }
  /** ListWorkflowDefinitions: the answer is filtered to the caller's workflows. */
  | { readonly kind: 'filter-definitions' };

/** What a method requires. `public`: no credentials at all (health only). */
export interface MethodPolicy {
  readonly role: Role | 'public';
  readonly scope: WorkflowScope;
}

const field =
  (name: string) =>
  (request: unknown): string | undefined => {
    if (typeof request !== 'object' || request === null) return undefined;
    const value = (request as Record<string, unknown>)[name];
    return typeof value === 'string' ? value : undefined;
  };
const definitionId = (request: unknown): string | undefined =>
  field('id')((request as { definition?: unknown } | null)?.definition);

const ORCHESTRATOR = '/multiagents.v1.OrchestratorService/';
const WORKER_MANAGER = '/multiagents.v1.WorkerManagerService/';
const EVENT_MONITOR = '/multiagents.v1.EventMonitorService/';
const run = (role: Role): MethodPolicy => ({ role, scope: { kind: 'run', txIdOf: field('txId') } });

/**
 * The role and scope of every method (SPEC §6). A method missing from this table needs `admin`
 * and is refused to workflow-limited callers: a new RPC is closed until someone lists it here.
 */
export const METHOD_POLICIES: Readonly<Record<string, MethodPolicy>> = Object.freeze({
  [`${ORCHESTRATOR}RegisterWorkflow`]: {
    role: Role.Admin,
    scope: { kind: 'workflow', workflowIdOf: definitionId },
  },
  [`${ORCHESTRATOR}GetWorkflowDefinition`]: {
    role: Role.Reader,
    scope: { kind: 'workflow', workflowIdOf: field('id') },
  },
  [`${ORCHESTRATOR}ListWorkflowDefinitions`]: { role: Role.Reader, scope: { kind: 'filter-definitions' } },
  [`${ORCHESTRATOR}StartWorkflow`]: {
    role: Role.Operator,
    scope: { kind: 'workflow', workflowIdOf: field('workflowId') },
  },
  [`${ORCHESTRATOR}GetWorkflow`]: run(Role.Reader),
  // A workflow-limited caller must filter by one of its workflows.
  [`${ORCHESTRATOR}ListWorkflows`]: {
    role: Role.Reader,
    scope: { kind: 'workflow', workflowIdOf: field('workflowId') },
  },
  [`${ORCHESTRATOR}WatchWorkflow`]: run(Role.Reader),
  [`${ORCHESTRATOR}SignalWorkflow`]: run(Role.Operator),
  [`${ORCHESTRATOR}CancelWorkflow`]: run(Role.Operator),
  [`${ORCHESTRATOR}RetryStep`]: run(Role.Operator),
  [`${ORCHESTRATOR}SkipStep`]: run(Role.Operator),
  [`${ORCHESTRATOR}ResumeCompensation`]: run(Role.Operator),
  [`${ORCHESTRATOR}ListWorkerManagers`]: { role: Role.Reader, scope: { kind: 'global', readOnly: true } },
  [`${WORKER_MANAGER}ListWorkers`]: { role: Role.Reader, scope: { kind: 'global', readOnly: true } },
  [`${WORKER_MANAGER}Drain`]: { role: Role.Admin, scope: { kind: 'global', readOnly: false } },
  [`${EVENT_MONITOR}GetTimeline`]: run(Role.Reader),
  // A workflow-limited caller must filter by one of its workflows.
  [`${EVENT_MONITOR}ListStuckRuns`]: {
    role: Role.Reader,
    scope: { kind: 'workflow', workflowIdOf: field('workflowId') },
  },
  [`${EVENT_MONITOR}WatchEvents`]: {
    role: Role.Reader,
    scope: { kind: 'workflow', workflowIdOf: field('workflowId') },
  },
  // Dead letters hold any workflow's messages: not for workflow-limited callers.
  [`${EVENT_MONITOR}ListDeadLetters`]: { role: Role.Reader, scope: { kind: 'global', readOnly: false } },
  [`${EVENT_MONITOR}ReplayDeadLetter`]: { role: Role.Operator, scope: { kind: 'global', readOnly: false } },
  [`${EVENT_MONITOR}DiscardDeadLetter`]: { role: Role.Operator, scope: { kind: 'global', readOnly: false } },
  [`${EVENT_MONITOR}ListMonitoredWorkers`]: { role: Role.Reader, scope: { kind: 'global', readOnly: true } },
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': {
    role: Role.Reader,
    scope: { kind: 'global', readOnly: true },
  },
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': {
    role: Role.Reader,
    scope: { kind: 'global', readOnly: true },
  },
  '/grpc.health.v1.Health/Check': { role: 'public', scope: { kind: 'none' } },
  '/grpc.health.v1.Health/Watch': { role: 'public', scope: { kind: 'none' } },
});

const UNLISTED: MethodPolicy = { role: Role.Admin, scope: { kind: 'global', readOnly: false } };

/** The policy of a method path (`/package.Service/Method`). */
export function policyOf(path: string): MethodPolicy {
  return Object.hasOwn(METHOD_POLICIES, path) ? (METHOD_POLICIES[path] as MethodPolicy) : UNLISTED;
}

/** What the transport knows about a call besides its metadata. */
export interface CallIdentity {
  readonly metadata: Metadata;
  /** The verified client certificate (mTLS), if any. */
  readonly peerCertificate?: PeerCertificate;
}

const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;
/** A token longer than this is refused before it is parsed. */
const MAX_TOKEN_LENGTH = 16 * 1024;

/**
 * Checks callers: `authenticate` turns a call's credentials into a {@link Principal} (or throws
 * UnauthenticatedError), `authorize` checks its role and workflows against a method's policy (or
 * throws PermissionDeniedError). Create one per server; `close()` stops re-reading a JWKS file.
 *
 * @example
 * const authorizer = new Authorizer({ jwt: { secret, audience: 'multiagents' } });
 * const caller = await authorizer.authenticate({ metadata });
 * authorizer.authorize(caller, '/multiagents.v1.OrchestratorService/StartWorkflow', 'order_processing');
 */
export class Authorizer {
  private readonly jwt: ResolvedJwtOptions | undefined;
  private readonly certificateRoles: ReadonlyMap<string, Role>;
  private getKey: JWTVerifyGetKey | undefined;
  private jwksTimer: NodeJS.Timeout | undefined;
  private jwksJson = '';

  constructor(options: AuthOptions) {
    const problems = checkAuthOptions(options);
    if (problems.length > 0) throw new ValidationError('invalid authentication options', problems);
    this.jwt = options.jwt === undefined ? undefined : { ...DEFAULT_JWT_OPTIONS, ...options.jwt };
    this.certificateRoles = new Map(Object.entries(options.certificateRoles ?? {}));
    const jwksUrl = this.jwt?.jwksUrl;
    if (jwksUrl !== undefined) {
      this.getKey = createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 });
    }
  }

  /** Reads a JWKS file, if one is configured, and re-reads it on an interval. Call before serving. */
  async start(): Promise<void> {
    const file = this.jwt?.jwksFile;
    if (file === undefined) return;
    await this.loadJwksFile(file, true);
    this.jwksTimer = setInterval(() => void this.loadJwksFile(file, false), this.jwt?.jwksReloadIntervalMs);
    this.jwksTimer.unref();
  }

  /** Stops re-reading the JWKS file. */
  close(): void {
    if (this.jwksTimer !== undefined) clearInterval(this.jwksTimer);
    this.jwksTimer = undefined;
  }

  /** Who is calling: a bearer token when there is one, else the client certificate. */
  async authenticate(call: CallIdentity): Promise<Principal> {
    const header = call.metadata.get('authorization');
    if (header.length > 1) throw new UnauthenticatedError('more than one authorization header');
    const value = header[0];
    if (value !== undefined) {
      if (typeof value !== 'string' || value.length > MAX_TOKEN_LENGTH) {
        throw new UnauthenticatedError('authorization header is not a bearer token');
      }
      return this.verifyToken(value);
    }
    const certificate = call.peerCertificate;
    const subject = certificate?.subject?.CN;
    if (certificate !== undefined && typeof subject === 'string' && subject.length > 0) {
      const role = this.certificateRoles.get(subject) ?? this.certificateRoles.get('*');
      if (role === undefined) {
        throw new PermissionDeniedError(`client certificate ${subject} has no role`, { subject });
      }
      return { subject, role, via: 'mtls' };
    }
    throw new UnauthenticatedError(
      'no credentials: send "authorization: Bearer <token>" or a client certificate',
    );
  }

  /**
   * Checks that `caller` may call `path`, on `workflowId` when the method is about one workflow
   * (undefined for `global` methods and unknown runs).
   */
  authorize(caller: Principal, path: string, workflowId?: string): void {
    this.authorizeRole(caller, path);
    this.authorizeWorkflow(caller, path, workflowId);
  }

  /** The role half of {@link authorize}: checked as soon as the caller is known. */
  authorizeRole(caller: Principal, path: string): void {
    const policy = policyOf(path);
    if (policy.role !== 'public' && RANK[caller.role] < RANK[policy.role]) {
      throw new PermissionDeniedError(
        `${methodName(path)} needs the ${policy.role} role; ${caller.subject} has ${caller.role}`,
        {
          subject: caller.subject,
          required: policy.role,
        },
      );
    }
  }

  /** The workflow half of {@link authorize}, for callers limited to some workflows. */
  authorizeWorkflow(caller: Principal, path: string, workflowId?: string): void {
    const allowed = caller.workflows;
    if (allowed === undefined) return;
    const scope = policyOf(path).scope;
    if (scope.kind === 'global' && !scope.readOnly) {
      throw new PermissionDeniedError(
        `${methodName(path)} is not allowed to a caller limited to some workflows`,
        {
          subject: caller.subject,
        },
      );
    }
    if (
      (scope.kind === 'workflow' || scope.kind === 'run') &&
      workflowId !== undefined &&
      !allowed.has(workflowId)
    ) {
      throw new PermissionDeniedError(`${caller.subject} may not use workflow ${clip(workflowId)}`, {
        subject: caller.subject,
        workflowId: clip(workflowId),
      });
    }
    if (scope.kind === 'workflow' && workflowId === undefined) {
      throw new PermissionDeniedError(
        `${caller.subject} is limited to some workflows: ${methodName(path)} must name one of them`,
        { subject: caller.subject },
      );
    }
  }

  private async verifyToken(header: string): Promise<Principal> {
    const jwt = this.jwt;
    if (jwt === undefined) throw new UnauthenticatedError('bearer tokens are not accepted here');
    const token = BEARER.exec(header)?.[1];
    if (token === undefined) throw new UnauthenticatedError('authorization header is not "Bearer <JWT>"');
    const verifyOptions = {
      audience: jwt.audience as string | string[],
      ...(jwt.issuer === undefined ? {} : { issuer: jwt.issuer as string | string[] }),
      clockTolerance: jwt.clockToleranceSec,
      requiredClaims: ['exp', 'sub'],
    };
    let payload: JWTPayload;
    try {
      if (jwt.secret !== undefined) {
        ({ payload } = await jwtVerify(token, jwt.secret, { ...verifyOptions, algorithms: ['HS256'] }));
      } else {
        const getKey = this.getKey;
        if (getKey === undefined) throw new UnauthenticatedError('no JWT verification key is loaded');
        ({ payload } = await jwtVerify(token, getKey, { ...verifyOptions, algorithms: [...jwt.algorithms] }));
      }
    } catch (err) {
      throw new UnauthenticatedError(`bearer token refused: ${describeJoseError(err)}`, subjectOf(token));
    }
    const subject = payload.sub as string;
    const role = highestRole(payload[jwt.rolesClaim]);
    if (role === undefined) {
      throw new PermissionDeniedError(`token of ${subject} grants no role (claim ${jwt.rolesClaim})`, {
        subject,
      });
    }
    const expiresAt = ((payload.exp as number) + jwt.clockToleranceSec) * 1000;
    const claimed = payload[jwt.workflowsClaim];
    if (claimed === undefined) return { subject, role, via: 'jwt', expiresAt };
    if (!Array.isArray(claimed) || claimed.some((id) => typeof id !== 'string')) {
      throw new UnauthenticatedError(
        `token of ${subject}: claim ${jwt.workflowsClaim} must be a list of workflow ids`,
        {
          subject,
        },
      );
    }
    return { subject, role, workflows: new Set(claimed as string[]), via: 'jwt', expiresAt };
  }

  private async loadJwksFile(file: string, first: boolean): Promise<void> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (first)
        throw new ValidationError('invalid JWKS file', [
          `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        ]);
      return;
    }
    if (text === this.jwksJson) return;
    try {
      const jwks = JSON.parse(text) as JSONWebKeySet;
      this.getKey = createLocalJWKSet(jwks);
      this.jwksJson = text;
    } catch (err) {
      // A half-written rotation keeps the keys already loaded; at start it is a configuration error.
      if (first)
        throw new ValidationError('invalid JWKS file', [
          `${file} is not a JSON Web Key Set: ${(err as Error).message}`,
        ]);
    }
  }
}

/** Every problem of a set of authentication options. */
export function checkAuthOptions(options: AuthOptions): string[] {
  const problems: string[] = [];
  const jwt = options.jwt;
  const roles = options.certificateRoles ?? {};
  if (jwt === undefined && Object.keys(roles).length === 0) {
    problems.push('authentication needs JWT verification or certificate roles (or both)');
  }
  for (const [subject, role] of Object.entries(roles)) {
    if (!isRole(role))
      problems.push(`certificate ${subject}: role must be reader, operator or admin, got ${String(role)}`);
  }
  if (jwt !== undefined) {
    const sources = [jwt.secret, jwt.jwksFile, jwt.jwksUrl].filter((source) => source !== undefined).length;
    if (sources !== 1)
      problems.push('JWT verification needs exactly one of a shared secret, a JWKS file or a JWKS URL');
    if (jwt.secret !== undefined && jwt.secret.length < 32) {
      problems.push(`the JWT secret is ${jwt.secret.length} bytes; HS256 needs at least 32`);
    }
    if (jwt.jwksUrl !== undefined) {
      try {
        const url = new URL(jwt.jwksUrl);
        if (url.protocol !== 'https:' && url.hostname !== '127.0.0.1' && url.hostname !== 'localhost') {
          problems.push('the JWKS URL must use https (plain http only on the loopback interface)');
        }
      } catch {
        problems.push('the JWKS URL is not a URL');
      }
    }
    const audiences = typeof jwt.audience === 'string' ? [jwt.audience] : [...(jwt.audience ?? [])];
    if (audiences.length === 0 || audiences.some((a) => typeof a !== 'string' || a.length === 0)) {
      problems.push('JWT verification needs an audience');
    }
    for (const algorithm of jwt.algorithms ?? []) {
      if (!/^(RS|PS|ES)(256|384|512)$|^EdDSA$/.test(algorithm)) {
        problems.push(
          `JWT algorithm ${algorithm} is not an asymmetric algorithm jose verifies (RS256, ES256…)`,
        );
      }
    }
  }
  return problems;
}

function highestRole(claim: unknown): Role | undefined {
  const values = Array.isArray(claim) ? (claim as unknown[]) : [claim];
  let best: Role | undefined;
  for (const value of values)
    if (isRole(value) && (best === undefined || RANK[value] > RANK[best])) best = value;
  return best;
}

/** The subject a token claims, for logs only (it did not verify: never trusted for anything else). */
function subjectOf(token: string): Record<string, unknown> | undefined {
  try {
    const payload = JSON.parse(
      Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'),
    ) as unknown;
    const sub = (payload as { sub?: unknown } | null)?.sub;
    return typeof sub === 'string' ? { claimedSubject: clip(sub) } : undefined;
  } catch {
    return undefined;
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed)
    return `claim ${err.claim} ${err.reason === 'check_failed' ? 'does not match' : err.reason}`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key matches its kid';
  if (err instanceof UnauthenticatedError) return err.message;
  if (err instanceof joseErrors.JOSEError) return err.code;
  return 'not a valid JWT';
}

function methodName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function clip(value: string): string {
  return value.length <= 80 ? value : `${value.slice(0, 80)}…`;
}
