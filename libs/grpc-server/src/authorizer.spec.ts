import { Metadata } from '@grpc/grpc-js';
import {
  ErrorCode,
  PermissionDeniedError,
  UnauthenticatedError,
  ValidationError,
} from '@multiagents/contracts';
import { Authorizer, checkAuthOptions, policyOf, Role } from './authorizer';

describe('Authorizer', () => {
  it('lists every problem of its options at once', () => {
    expect(
      checkAuthOptions({
        jwt: {
          secret: Buffer.alloc(8),
          jwksUrl: 'http://idp.example/jwks',
          audience: [],
          algorithms: ['HS256'],
        },
        certificateRoles: { bot: 'root' as Role },
      }),
    ).toEqual([
      'certificate bot: role must be reader, operator or admin, got root',
      'JWT verification needs exactly one of a shared secret, a JWKS file or a JWKS URL',
      'the JWT secret is 8 bytes; HS256 needs at least 32',
      'the JWKS URL must use https (plain http only on the loopback interface)',
      'JWT verification needs an audience',
      'JWT algorithm HS256 is not an asymmetric algorithm jose verifies (RS256, ES256…)',
    ]);
    expect(checkAuthOptions({})).toEqual([
      'authentication needs JWT verification or certificate roles (or both)',
    ]);
    expect(() => new Authorizer({})).toThrow(ValidationError);
  });

  it('closes every method it does not know, and opens health only', () => {
    expect(policyOf('/multiagents.v1.NewService/Anything')).toMatchObject({ role: Role.Admin });
    expect(policyOf('/grpc.health.v1.Health/Check').role).toBe('public');
    expect(policyOf('/multiagents.v1.OrchestratorService/GetWorkflow').role).toBe(Role.Reader);
    // Own properties only: a path named after an Object.prototype member is not a policy.
    expect(policyOf('constructor').role).toBe(Role.Admin);
  });

  it('refuses a malformed authorization header and a certificate without a role', async () => {
    const authorizer = new Authorizer({
      jwt: { secret: Buffer.alloc(32, 7), audience: 'a' },
      certificateRoles: { viewer: Role.Reader },
    });
    const metadata = new Metadata();
    metadata.set('authorization', 'Basic dXNlcjpwYXNz');
    await expect(authorizer.authenticate({ metadata })).rejects.toBeInstanceOf(UnauthenticatedError);
    await expect(authorizer.authenticate({ metadata: new Metadata() })).rejects.toMatchObject({
      code: ErrorCode.Unauthenticated,
    });
    const peerCertificate = { subject: { CN: 'stranger' } } as never;
    await expect(
      authorizer.authenticate({ metadata: new Metadata(), peerCertificate }),
    ).rejects.toBeInstanceOf(PermissionDeniedError);
    const viewer = await authorizer.authenticate({
      metadata: new Metadata(),
      peerCertificate: { subject: { CN: 'viewer' } } as never,
    });
    expect(viewer).toEqual({ subject: 'viewer', role: Role.Reader, via: 'mtls' });
    expect(() => authorizer.authorize(viewer, '/multiagents.v1.WorkerManagerService/Drain')).toThrow(
      PermissionDeniedError,
    );
  });

  it('lets readers read the event-monitor and only operators replay or discard; dead letters are not for workflow-limited callers', () => {
    const authorizer = new Authorizer({ jwt: { secret: Buffer.alloc(32, 7), audience: 'a' } });
    const monitor = '/multiagents.v1.EventMonitorService/';
    const reader = { subject: 'r', role: Role.Reader, via: 'jwt' } as const;
    const operator = { subject: 'o', role: Role.Operator, via: 'jwt' } as const;
    for (const method of [
      'GetTimeline',
      'ListStuckRuns',
      'ListDeadLetters',
      'ListMonitoredWorkers',
      'WatchEvents',
    ]) {
      expect(() => authorizer.authorize(reader, `${monitor}${method}`)).not.toThrow();
    }
    for (const method of ['ReplayDeadLetter', 'DiscardDeadLetter']) {
      expect(() => authorizer.authorize(reader, `${monitor}${method}`)).toThrow(PermissionDeniedError);
      expect(() => authorizer.authorize(operator, `${monitor}${method}`)).not.toThrow();
    }
    const limited = { ...reader, workflows: new Set(['orders']) };
    expect(() => authorizer.authorize(limited, `${monitor}ListDeadLetters`)).toThrow(PermissionDeniedError);
    expect(() => authorizer.authorize(limited, `${monitor}ListStuckRuns`, 'orders')).not.toThrow();
    expect(() => authorizer.authorize(limited, `${monitor}WatchEvents`, 'billing')).toThrow(
      PermissionDeniedError,
    );
    expect(() => authorizer.authorize(limited, `${monitor}WatchEvents`)).toThrow(PermissionDeniedError);
  });
});
