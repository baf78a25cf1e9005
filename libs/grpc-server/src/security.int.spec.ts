import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dirname } from 'node:path';
import {
  Client,
  credentials as grpcCredentials,
  loadPackageDefinition,
  Metadata,
  status,
  type ClientDuplexStream,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import { ErrorCode, hasErrorCode, MultiAgentsError, RunNotFoundError } from '@multiagents/contracts';
import type { LogFields, Logger } from '@multiagents/core';
import { createTestCa, waitFor, type TestCa } from '@multiagents/testing';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { AuthOptions } from './authorizer';
import { startTestControlPlane, type TestControlPlane } from './test-stack';

jest.setTimeout(30_000);

const SECRET = randomBytes(32);
const AUDIENCE = 'multiagents';
const ISSUER = 'https://issuer.test';

interface TokenOptions {
  readonly sub?: string;
  readonly roles?: unknown;
  readonly workflows?: string[];
  readonly audience?: string;
  readonly expiresInSec?: number;
  readonly key?: Uint8Array;
}

async function token(options: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({
    roles: options.roles ?? ['reader'],
    ...(options.workflows === undefined ? {} : { workflows: options.workflows }),
  })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(options.sub ?? 'alice')
    .setIssuer(ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setIssuedAt(now - 5)
    .setExpirationTime(now + (options.expiresInSec ?? 300));
  return jwt.sign(options.key ?? SECRET);
}

/** A logger that keeps what it is given. */
class RecordingLogger implements Logger {
  readonly lines: { level: string; fields: LogFields; message: string }[] = [];
  constructor(private readonly base: LogFields = {}) {}
  private log(level: string, fields: LogFields, message: string): void {
    this.lines.push({ level, fields: { ...this.base, ...fields }, message });
  }
  trace(fields: LogFields, message: string): void {
    this.log('trace', fields, message);
  }
  debug(fields: LogFields, message: string): void {
    this.log('debug', fields, message);
  }
  info(fields: LogFields, message: string): void {
    this.log('info', fields, message);
  }
  warn(fields: LogFields, message: string): void {
    this.log('warn', fields, message);
  }
  error(fields: LogFields, message: string): void {
    this.log('error', fields, message);
  }
  child(fields: LogFields): Logger {
    const child = new RecordingLogger({ ...this.base, ...fields });
    // Share one list.
    (child as unknown as { lines: unknown }).lines = this.lines;
    return child;
  }
}

async function codeOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'OK';
  } catch (err) {
    return (err as MultiAgentsError).code;
  }
}

const jwtAuth: AuthOptions = { jwt: { secret: SECRET, audience: AUDIENCE, issuer: ISSUER } };

describe('control plane security: JWT roles on every method', () => {
  let plane: TestControlPlane;
  let logger: RecordingLogger;
  const clients: MultiAgentsClient[] = [];
  let finishedTxId: string;

  const client = (tokenValue?: string): MultiAgentsClient => {
    const c = connect(plane.address, {
      timeoutMs: 5_000,
      retry: { maxAttempts: 1 },
      ...(tokenValue === undefined ? {} : { token: tokenValue }),
    });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    logger = new RecordingLogger();
    plane = await startTestControlPlane({ auth: jwtAuth, logger });
    const admin = client(await token({ roles: ['admin'] }));
    finishedTxId = (await admin.startWorkflow('order_processing', { orderId: 'o-1' })).txId;
    for await (const run of admin.watchWorkflow(finishedTxId)) void run;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await plane.close();
  });

  /** Every method, with the role it needs; Drain last (it drains the embedded worker-manager). */
  const methods: [string, 'reader' | 'operator' | 'admin', (c: MultiAgentsClient) => Promise<unknown>][] = [
    ['ListWorkflowDefinitions', 'reader', (c) => c.listWorkflowDefinitions()],
    ['GetWorkflowDefinition', 'reader', (c) => c.getWorkflowDefinition('order_processing')],
    ['GetWorkflow', 'reader', (c) => c.getWorkflow(finishedTxId)],
    ['ListWorkflows', 'reader', (c) => c.listWorkflows()],
    [
      'WatchWorkflow',
      'reader',
      async (c) => {
        for await (const run of c.watchWorkflow(finishedTxId)) void run;
      },
    ],
    ['ListWorkers', 'reader', (c) => c.listWorkers()],
    ['StartWorkflow', 'operator', (c) => c.startWorkflow('order_processing', { orderId: 'x' })],
    ['SignalWorkflow', 'operator', (c) => c.signalWorkflow(finishedTxId, 'approved', {})],
    ['CancelWorkflow', 'operator', (c) => c.cancelWorkflow(finishedTxId)],
    ['RetryStep', 'operator', (c) => c.retryStep(finishedTxId, 'ship_order')],
    ['SkipStep', 'operator', (c) => c.skipStep(finishedTxId, 'ship_order')],
    ['ResumeCompensation', 'operator', (c) => c.resumeCompensation(finishedTxId)],
    [
      'RegisterWorkflow',
      'admin',
      (c) =>
        c.registerWorkflow({
          id: 'security_probe',
          version: 1,
          steps: [{ name: 'a', kind: 'task', worker: 'inventory.reserve' }],
        }),
    ],
  ];
  const rank = { reader: 1, operator: 2, admin: 3 } as const;

  it('refuses every method without a token, with an expired one, a wrong audience or a bad signature', async () => {
    const anonymous = client();
    const expired = client(await token({ roles: ['admin'], expiresInSec: -120 }));
    const elsewhere = client(await token({ roles: ['admin'], audience: 'another-service' }));
    const forged = client(await token({ roles: ['admin'], key: randomBytes(32) }));
    for (const [name, , call] of [
      ...methods,
      ['Drain', 'admin', (c: MultiAgentsClient) => c.drain()] as const,
    ]) {
      for (const c of [anonymous, expired, elsewhere, forged]) {
        expect({ name, code: await codeOf(call(c)) }).toEqual({ name, code: ErrorCode.Unauthenticated });
      }
    }
  });

  it('checks the role of every method: a lower role is PERMISSION_DENIED, the right one gets through', async () => {
    for (const role of ['reader', 'operator', 'admin'] as const) {
      const c = client(await token({ sub: `${role}-user`, roles: [role] }));
      for (const [name, needed, call] of methods) {
        const code = await codeOf(call(c));
        if (rank[role] < rank[needed]) {
          expect({ role, name, code }).toEqual({ role, name, code: ErrorCode.PermissionDenied });
        } else {
          // Through the gate: whatever the method answers (NOT_FOUND, FAILED_PRECONDITION…).
          expect({ role, name, code }).not.toEqual(
            expect.objectContaining({ code: expect.stringMatching(/^(UNAUTHENTICATED|PERMISSION_DENIED)$/) }),
          );
        }
      }
    }
  });

  it('logs refusals with the subject and never the token', async () => {
    const secretToken = await token({ sub: 'mallory', roles: ['reader'] });
    await codeOf(client(secretToken).cancelWorkflow(finishedTxId));
    const refusal = logger.lines.find(
      (line) => line.message === 'call refused' && line.fields['subject'] === 'mallory',
    );
    expect(refusal?.fields).toMatchObject({
      method: '/multiagents.v1.OrchestratorService/CancelWorkflow',
      code: ErrorCode.PermissionDenied,
    });
    const expiredToken = await token({ sub: 'eve', expiresInSec: -120 });
    await codeOf(client(expiredToken).getWorkflow(finishedTxId));
    expect(
      logger.lines.find(
        (line) => line.fields['subject'] === 'eve' && line.fields['code'] === ErrorCode.Unauthenticated,
      ),
    ).toBeDefined();
    const everything = JSON.stringify(logger.lines);
    expect(everything).not.toContain(secretToken);
    expect(everything).not.toContain(expiredToken);
  });

  it('limits a token to its workflows', async () => {
    const admin = client(await token({ roles: ['admin'] }));
    const gatedTx = (await admin.startWorkflow('gated', {})).txId;
    const limited = client(
      await token({ sub: 'order-bot', roles: ['operator'], workflows: ['order_processing'] }),
    );
    expect(await codeOf(limited.startWorkflow('order_processing', { orderId: 'ok' }))).toBe('OK');
    expect(await codeOf(limited.startWorkflow('gated', {}))).toBe(ErrorCode.PermissionDenied);
    expect(await codeOf(limited.getWorkflow(finishedTxId))).toBe('OK');
    expect(await codeOf(limited.getWorkflow(gatedTx))).toBe(ErrorCode.PermissionDenied);
    expect(await codeOf(limited.cancelWorkflow(gatedTx))).toBe(ErrorCode.PermissionDenied);
    expect(await codeOf(limited.listWorkflows())).toBe(ErrorCode.PermissionDenied);
    expect(await codeOf(limited.listWorkflows({ workflowId: 'order_processing' }))).toBe('OK');
    expect((await limited.listWorkflowDefinitions()).map((d) => d.id)).toEqual(['order_processing']);
    expect(await codeOf(limited.drain())).toBe(ErrorCode.PermissionDenied);
    // The run's workflow cannot be read (the store away): refused with that, never let through.
    const getRun = jest
      .spyOn(plane.stack.orchestrator, 'getRun')
      .mockRejectedValueOnce(new MultiAgentsError(ErrorCode.Unavailable, 'store away', { retryable: true }));
    try {
      expect(await codeOf(limited.cancelWorkflow(gatedTx))).toBe(ErrorCode.Unavailable);
    } finally {
      getRun.mockRestore();
    }
    expect((await admin.getWorkflow(gatedTx)).state).not.toBe('cancelled');
    // An unknown run is NOT_FOUND, to a limited caller as to anyone.
    expect(await codeOf(limited.getWorkflow('no-such-run'))).toBe(ErrorCode.NotFound);
    // A run unknown when the caller is checked and there when the handler reads it (another
    // caller started it meanwhile): NOT_FOUND, never handed over or acted on, whatever its workflow.
    const calls: [string, () => Promise<unknown>][] = [
      [
        'WatchWorkflow',
        async () => {
          // The first change is enough: the run (still waiting) never ends this stream.
          for await (const run of limited.watchWorkflow(gatedTx)) return run;
        },
      ],
      ['GetWorkflow', () => limited.getWorkflow(gatedTx)],
      ['CancelWorkflow', () => limited.cancelWorkflow(gatedTx)],
    ];
    for (const [name, call] of calls) {
      const unknownAtCheck = jest
        .spyOn(plane.stack.orchestrator, 'getRun')
        .mockRejectedValueOnce(new RunNotFoundError(gatedTx));
      try {
        expect({ name, code: await codeOf(call()) }).toEqual({ name, code: ErrorCode.NotFound });
        // The check did run against the missing run (the handler's own read is not mocked).
        expect(unknownAtCheck).toHaveBeenCalledWith(gatedTx);
      } finally {
        unknownAtCheck.mockRestore();
      }
    }
    await admin.cancelWorkflow(gatedTx);
  });

  it('answers health without credentials, and serves reflection to readers only', async () => {
    const health = healthClient(plane.address);
    try {
      const answer = await new Promise<string>((resolve, reject) =>
        health.Check({ service: '' }, (err: ServiceError | null, res: Dynamic) =>
          err ? reject(err) : resolve(res.status as string),
        ),
      );
      expect(answer).toBe('SERVING');
    } finally {
      health.close();
    }
    expect(await reflectionCode(plane.address)).toBe(status.UNAUTHENTICATED);
    expect(await reflectionCode(plane.address, await token())).toBe(status.OK);
  });

  it('admin may drain (last: it drains the embedded worker-manager)', async () => {
    expect(await codeOf(client(await token({ roles: ['operator'] })).drain())).toBe(
      ErrorCode.PermissionDenied,
    );
    expect(await codeOf(client(await token({ roles: ['admin'] })).drain({ drainTimeoutMs: 1_000 }))).toBe(
      'OK',
    );
  });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- clients built at run time from descriptors
type Dynamic = any;

function serviceAt(root: GrpcObject, path: string): ServiceClientConstructor {
  let node: unknown = root;
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
  return node as ServiceClientConstructor;
}

function healthClient(address: string): Dynamic {
  const definition = loadSync('health/v1/health.proto', {
    includeDirs: [join(dirname(healthProtoPath), '..', '..')],
    keepCase: true,
    enums: String,
  });
  const Health = serviceAt(loadPackageDefinition(definition), 'grpc.health.v1.Health');
  return new Health(address, grpcCredentials.createInsecure()) as Dynamic;
}

/** Lists services through reflection; resolves with the gRPC status code of the exchange. */
function reflectionCode(address: string, bearer?: string): Promise<status> {
  const root = join(dirname(require.resolve('@grpc/reflection')), '..', 'proto');
  const definition = loadSync('grpc/reflection/v1/reflection.proto', {
    includeDirs: [root],
    keepCase: true,
    oneofs: true,
  });
  const Reflection = serviceAt(loadPackageDefinition(definition), 'grpc.reflection.v1.ServerReflection');
  const reflection = new Reflection(address, grpcCredentials.createInsecure()) as Dynamic;
  const metadata = new Metadata();
  if (bearer !== undefined) metadata.set('authorization', `Bearer ${bearer}`);
  const stream: ClientDuplexStream<Dynamic, Dynamic> = reflection.ServerReflectionInfo(metadata);
  return new Promise<status>((resolve) => {
    stream.once('data', () => {
      stream.cancel();
      reflection.close();
      resolve(status.OK);
    });
    stream.once('error', (err: ServiceError) => {
      reflection.close();
      resolve(err.code);
    });
    stream.write({ list_services: '*' });
  });
}

describe('control plane security: a stream ends with the token that opened it', () => {
  it('ends a WatchWorkflow UNAUTHENTICATED when its token expires', async () => {
    const plane = await startTestControlPlane({ auth: { jwt: { ...jwtAuth.jwt!, clockToleranceSec: 0 } } });
    const admin = connect(plane.address, {
      token: await token({ roles: ['admin'] }),
      retry: { maxAttempts: 1 },
    });
    const reader = connect(plane.address, {
      token: await token({ roles: ['reader'], expiresInSec: 2 }),
      retry: { maxAttempts: 1 },
    });
    try {
      plane.gate.close(); // the run waits: only the token can end the watch before its limit
      const { txId } = await admin.startWorkflow('gated', {});
      const watching = (async () => {
        try {
          for await (const run of reader.watchWorkflow(txId)) void run;
          return undefined;
        } catch (err) {
          return err;
        }
      })();
      // Not the server's limit (an hour) nor a deadline: the token, which had at most 2 s left.
      expect(await watching).toMatchObject({ code: ErrorCode.Unauthenticated });
      expect(plane.server.openWatches).toBe(0);
      await admin.cancelWorkflow(txId);
    } finally {
      plane.gate.open();
      admin.close();
      reader.close();
      await plane.close();
    }
  });
});

describe('control plane security: JWKS (ES256 and RS256)', () => {
  it('verifies tokens with public keys from a JWKS file, and picks up a rotated file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jwks-'));
    const es = await generateKeyPair('ES256');
    const rs = await generateKeyPair('RS256');
    const jwksFile = join(dir, 'jwks.json');
    writeFileSync(
      jwksFile,
      JSON.stringify({ keys: [{ ...(await exportJWK(es.publicKey)), kid: 'es-1', alg: 'ES256' }] }),
    );
    const plane = await startTestControlPlane({
      auth: { jwt: { jwksFile, audience: AUDIENCE, jwksReloadIntervalMs: 50 } },
    });
    const sign = (
      alg: 'ES256' | 'RS256',
      kid: string,
      key: Parameters<SignJWT['sign']>[0],
    ): Promise<string> =>
      new SignJWT({ roles: 'reader' })
        .setProtectedHeader({ alg, kid })
        .setSubject('svc')
        .setAudience(AUDIENCE)
        .setExpirationTime('5m')
        .sign(key);
    const esClient = connect(plane.address, {
      token: await sign('ES256', 'es-1', es.privateKey),
      retry: { maxAttempts: 1 },
    });
    const rsClient = connect(plane.address, {
      token: await sign('RS256', 'rs-1', rs.privateKey),
      retry: { maxAttempts: 1 },
    });
    try {
      expect(await codeOf(esClient.listWorkflowDefinitions())).toBe('OK');
      expect(await codeOf(rsClient.listWorkflowDefinitions())).toBe(ErrorCode.Unauthenticated);
      // Rotation: the RS256 key is added to the file; no restart.
      writeFileSync(
        jwksFile,
        JSON.stringify({
          keys: [
            { ...(await exportJWK(es.publicKey)), kid: 'es-1', alg: 'ES256' },
            { ...(await exportJWK(rs.publicKey)), kid: 'rs-1', alg: 'RS256' },
          ],
        }),
      );
      await waitFor(async () => (await codeOf(rsClient.listWorkflowDefinitions())) === 'OK', {
        timeoutMs: 5_000,
      });
      // An HS256 token (a secret guessed from a public key, or any secret) is refused with JWKS.
      const hs = connect(plane.address, { token: await token(), retry: { maxAttempts: 1 } });
      expect(await codeOf(hs.listWorkflowDefinitions())).toBe(ErrorCode.Unauthenticated);
      hs.close();
    } finally {
      esClient.close();
      rsClient.close();
      await plane.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('control plane security: TLS, mutual TLS and certificate rotation', () => {
  let dir: string;
  let ca: TestCa;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tls-'));
    ca = createTestCa(dir, 'ca-one');
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('serves TLS: a client trusting the CA gets through, a plaintext client does not', async () => {
    const server = ca.server();
    const plane = await startTestControlPlane({
      tls: { certFile: server.certFile, keyFile: server.keyFile },
    });
    const secure = connect(plane.address, {
      tls: { ca: ca.cert },
      retry: { maxAttempts: 1 },
      timeoutMs: 3_000,
    });
    const plain = connect(plane.address, { retry: { maxAttempts: 1 }, timeoutMs: 3_000 });
    try {
      expect(await codeOf(secure.listWorkflowDefinitions())).toBe('OK');
      expect(await codeOf(plain.listWorkflowDefinitions())).toBe('UNAVAILABLE');
    } finally {
      secure.close();
      plain.close();
      await plane.close();
    }
  });

  it('mutual TLS: no certificate or one from another CA cannot connect; the CN decides the role', async () => {
    const server = ca.server('mtls-server');
    const other = createTestCa(join(dir, 'other'), 'ca-other');
    const plane = await startTestControlPlane({
      tls: { certFile: server.certFile, keyFile: server.keyFile, clientCaFile: ca.certFile },
      auth: { certificateRoles: { 'ops-bot': 'operator', viewer: 'reader' } },
    });
    const as = (cert?: { cert: Buffer; key: Buffer }): MultiAgentsClient =>
      connect(plane.address, {
        tls: { ca: ca.cert, ...(cert === undefined ? {} : { cert: cert.cert, key: cert.key }) },
        retry: { maxAttempts: 1 },
        timeoutMs: 3_000,
      });
    const anonymous = as();
    const stranger = as(other.client('ops-bot'));
    const viewer = as(ca.client('viewer'));
    const ops = as(ca.client('ops-bot'));
    const nobody = as(ca.client('nobody'));
    try {
      expect(await codeOf(anonymous.listWorkflowDefinitions())).toBe('UNAVAILABLE');
      expect(await codeOf(stranger.listWorkflowDefinitions())).toBe('UNAVAILABLE');
      expect(await codeOf(viewer.listWorkflowDefinitions())).toBe('OK');
      expect(await codeOf(viewer.startWorkflow('order_processing', {}))).toBe(ErrorCode.PermissionDenied);
      expect(await codeOf(ops.startWorkflow('order_processing', {}))).toBe('OK');
      expect(await codeOf(nobody.listWorkflowDefinitions())).toBe(ErrorCode.PermissionDenied);
    } finally {
      for (const c of [anonymous, stranger, viewer, ops, nobody]) c.close();
      await plane.close();
    }
  });

  it('rotates the server certificate without a restart, and keeps the old one while the new set is half-written', async () => {
    const first = ca.server('rotating-1');
    const nextCa = createTestCa(join(dir, 'next'), 'ca-next');
    const second = nextCa.server('rotating-2');
    const live = { certFile: join(dir, 'live.crt'), keyFile: join(dir, 'live.key') };
    copyFileSync(first.certFile, live.certFile);
    copyFileSync(first.keyFile, live.keyFile);
    const logger = new RecordingLogger();
    const plane = await startTestControlPlane({ tls: { ...live, reloadIntervalMs: 50 }, logger });
    const trusting = (trusted: Buffer): MultiAgentsClient =>
      connect(plane.address, { tls: { ca: trusted }, retry: { maxAttempts: 1 }, timeoutMs: 2_000 });
    const probe = async (trusted: Buffer): Promise<string> => {
      const c = trusting(trusted); // a new channel: a new TLS handshake
      try {
        return await codeOf(c.listWorkflowDefinitions());
      } finally {
        c.close();
      }
    };
    try {
      expect(await probe(ca.cert)).toBe('OK');
      // Half-written rotation: new certificate, old key. The server keeps serving the old set.
      copyFileSync(second.certFile, live.certFile);
      await waitFor(() => logger.lines.some((line) => /do not form a usable set/.test(line.message)), {
        timeoutMs: 5_000,
      });
      expect(await probe(ca.cert)).toBe('OK');
      // The key arrives: the new set is taken up by the running server.
      copyFileSync(second.keyFile, live.keyFile);
      await waitFor(async () => (await probe(nextCa.cert)) === 'OK', { timeoutMs: 5_000 });
      expect(await probe(ca.cert)).toBe('UNAVAILABLE');
    } finally {
      await plane.close();
    }
  });
});

describe('control plane: malformed input is INVALID_ARGUMENT, never INTERNAL', () => {
  let plane: TestControlPlane;
  let c: MultiAgentsClient;

  beforeAll(async () => {
    plane = await startTestControlPlane();
    c = connect(plane.address, { retry: { maxAttempts: 1 } });
  });

  afterAll(async () => {
    c.close();
    await plane.close();
  });

  it('a start input nested 4,100 levels deep', async () => {
    let input: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 4_100; i++) input = { a: input };
    const err: unknown = await c.startWorkflow('order_processing', input).catch((e: unknown) => e);
    expect(hasErrorCode(err, ErrorCode.InvalidArgument)).toBe(true);
    expect((err as Error).message).toMatch(/nested more than 64 levels deep/);
  });

  it('a signal named constructor or __proto__, and a reserved step name', async () => {
    const { txId } = await c.startWorkflow('gated', {});
    for (const name of ['constructor', '__proto__', 'bad name']) {
      expect(await codeOf(c.signalWorkflow(txId, name, {}))).toBe(ErrorCode.InvalidArgument);
    }
    expect(await codeOf(c.skipStep(txId, 'constructor'))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(c.startWorkflow('__proto__', {}))).toBe(ErrorCode.InvalidArgument);
    await c.cancelWorkflow(txId);
  });

  it('a definition with a step named __proto__ or a wait on a signal named constructor', async () => {
    const err: unknown = await c
      .registerWorkflow({
        id: 'wedge',
        version: 1,
        steps: [
          { name: '__proto__', kind: 'task', worker: 'inventory.reserve' },
          { name: 'w', kind: 'wait', signal: 'constructor' },
        ],
      })
      .catch((e: unknown) => e);
    expect(hasErrorCode(err, ErrorCode.InvalidArgument)).toBe(true);
    expect((err as MultiAgentsError).details?.['problems']).toEqual([
      expect.stringMatching(/step "__proto__": name "__proto__" is reserved/),
      expect.stringMatching(/step "w": signal "constructor" is reserved/),
    ]);
  });

  it('says loudly when the API is open or plaintext', async () => {
    const logger = new RecordingLogger();
    const open = await startTestControlPlane({ logger });
    await open.close();
    expect(logger.lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        fields: expect.objectContaining({ security: 'open', host: '127.0.0.1' }),
        message: expect.stringMatching(
          /^AUTHENTICATION IS OFF: anyone who can reach 127\.0\.0\.1:\d+ can register workflows/,
        ),
      }),
    );
    const plaintextLogger = new RecordingLogger();
    const plaintext = await startTestControlPlane({ logger: plaintextLogger, auth: jwtAuth });
    await plaintext.close();
    expect(plaintextLogger.lines.map((line) => line.message)).toContainEqual(
      expect.stringMatching(/^TLS IS OFF: bearer tokens and payloads/),
    );
    expect(plaintextLogger.lines.map((line) => line.message)).not.toContainEqual(
      expect.stringMatching(/AUTHENTICATION IS OFF/),
    );
  });

  it('serves no reflection when it is turned off', async () => {
    const closed = await startTestControlPlane({ reflection: false });
    try {
      expect(await reflectionCode(closed.address)).toBe(status.UNIMPLEMENTED);
      expect(await reflectionCode(plane.address)).toBe(status.OK);
    } finally {
      await closed.close();
    }
  });

  it('malformed bytes to the health service', async () => {
    // A start-group tag with nothing after it: protobufjs (behind grpc-health-check) throws on it,
    // which grpc-js would answer with INTERNAL.
    const garbage = Buffer.from([0x3b]);
    const raw = new Client(plane.address, grpcCredentials.createInsecure());
    const answer = await new Promise<ServiceError | Buffer>((resolve) => {
      raw.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        (b: Buffer) => b,
        (b: Buffer) => b,
        garbage,
        new Metadata(),
        { deadline: Date.now() + 5_000 },
        (err, res) => {
          raw.close();
          resolve(err ?? (res as Buffer));
        },
      );
    });
    expect((answer as ServiceError).code).toBe(status.INVALID_ARGUMENT);
  });
});
