import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '@multiagents/contracts';
import { parseControlPlaneSecurity } from './security-config';

function problemsOf(env: Record<string, string>, checkFiles = false): readonly string[] {
  try {
    parseControlPlaneSecurity(env, { checkFiles });
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).problems;
  }
  throw new Error('expected a ValidationError');
}

describe('parseControlPlaneSecurity', () => {
  it('without authentication binds the loopback interface only, unless told otherwise', () => {
    expect(parseControlPlaneSecurity({})).toEqual({
      grpcHost: '127.0.0.1',
      httpHost: '127.0.0.1',
      reflection: true,
    });
    expect(parseControlPlaneSecurity({ GRPC_HOST: '0.0.0.0', HTTP_HOST: '::' })).toMatchObject({
      grpcHost: '0.0.0.0',
      httpHost: '::',
    });
  });

  it('reads a hardened configuration: TLS with a client CA, JWT and certificate roles', () => {
    const secret = 's'.repeat(40);
    const security = parseControlPlaneSecurity({
      MULTIAGENTS_TLS_CERT: '/tls/server.crt',
      MULTIAGENTS_TLS_KEY: '/tls/server.key',
      MULTIAGENTS_TLS_CLIENT_CA: '/tls/clients-ca.crt',
      MULTIAGENTS_TLS_RELOAD_INTERVAL_MS: '30000',
      MULTIAGENTS_AUTH_JWT_SECRET: secret,
      MULTIAGENTS_AUTH_JWT_AUDIENCE: 'multiagents, multiagents-api',
      MULTIAGENTS_AUTH_JWT_ISSUER: 'https://idp.example',
      MULTIAGENTS_AUTH_CERT_ROLES: 'worker-manager=admin,ci-bot=operator',
      GRPC_REFLECTION: 'false',
    });
    expect(security).toEqual({
      grpcHost: '0.0.0.0',
      httpHost: '0.0.0.0',
      reflection: false,
      tls: {
        certFile: '/tls/server.crt',
        keyFile: '/tls/server.key',
        clientCaFile: '/tls/clients-ca.crt',
        reloadIntervalMs: 30_000,
      },
      auth: {
        jwt: {
          secret: Buffer.from(secret),
          audience: ['multiagents', 'multiagents-api'],
          issuer: ['https://idp.example'],
        },
        certificateRoles: { 'worker-manager': 'admin', 'ci-bot': 'operator' },
      },
    });
  });

  it('lists every problem at once, never quoting a secret', () => {
    const problems = problemsOf({
      MULTIAGENTS_TLS_CERT: '/tls/server.crt',
      MULTIAGENTS_AUTH_JWT_SECRET: 'short-secret',
      MULTIAGENTS_AUTH_JWKS_URL: 'https://idp.example/jwks',
      MULTIAGENTS_AUTH_CERT_ROLES: 'bot=root,=admin',
      GRPC_REFLECTION: 'maybe',
    });
    expect(problems).toEqual([
      'MULTIAGENTS_TLS_CERT and MULTIAGENTS_TLS_KEY go together',
      'MULTIAGENTS_AUTH_CERT_ROLES: "bot=root" must be <certificate CN>=reader|operator|admin',
      'MULTIAGENTS_AUTH_CERT_ROLES: "=admin" must be <certificate CN>=reader|operator|admin',
      'set exactly one of MULTIAGENTS_AUTH_JWT_SECRET, MULTIAGENTS_AUTH_JWKS_FILE and MULTIAGENTS_AUTH_JWKS_URL',
      'MULTIAGENTS_AUTH_JWT_SECRET is 12 bytes; HS256 needs at least 32',
      'MULTIAGENTS_AUTH_JWT_AUDIENCE is required with JWT authentication',
      'GRPC_REFLECTION=maybe: must be true or false',
    ]);
    expect(problems.join('\n')).not.toContain('short-secret');
    expect(problemsOf({ MULTIAGENTS_AUTH_JWT_AUDIENCE: 'x' })).toEqual([
      expect.stringMatching(/MULTIAGENTS_AUTH_JWT_\* is set but no key is/),
    ]);
    expect(problemsOf({ MULTIAGENTS_AUTH_CERT_ROLES: 'bot=reader' })).toEqual([
      'MULTIAGENTS_AUTH_CERT_ROLES needs mutual TLS: set MULTIAGENTS_TLS_CLIENT_CA',
    ]);
  });

  it('with checkFiles, reads the TLS and JWKS files at start and reports what is wrong with them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'security-config-'));
    try {
      writeFileSync(join(dir, 'cert.pem'), 'not a certificate');
      writeFileSync(join(dir, 'key.pem'), 'not a key');
      writeFileSync(join(dir, 'jwks.json'), '{"nokeys": true}');
      const problems = problemsOf(
        {
          MULTIAGENTS_TLS_CERT: join(dir, 'cert.pem'),
          MULTIAGENTS_TLS_KEY: join(dir, 'key.pem'),
          MULTIAGENTS_AUTH_JWKS_FILE: join(dir, 'jwks.json'),
          MULTIAGENTS_AUTH_JWT_AUDIENCE: 'multiagents',
        },
        true,
      );
      expect(problems).toEqual([
        expect.stringMatching(
          /^MULTIAGENTS_TLS_\*: the certificate, key and CA files do not form a usable set/,
        ),
        expect.stringMatching(/^MULTIAGENTS_AUTH_JWKS_FILE: .*jwks\.json is not a JSON Web Key Set/),
      ]);
      expect(
        problemsOf(
          { MULTIAGENTS_TLS_CERT: join(dir, 'missing.pem'), MULTIAGENTS_TLS_KEY: join(dir, 'key.pem') },
          true,
        ),
      ).toEqual([expect.stringMatching(/cannot read the certificate file .*missing\.pem: ENOENT/)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
