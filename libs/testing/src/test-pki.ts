import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A certificate and its key, as files and as PEM contents. */
export interface TestCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** A private CA made for one test, and what it signs. */
export interface TestCa extends TestCertificate {
  /** A server certificate for 127.0.0.1 and localhost. */
  server(name?: string): TestCertificate;
  /** A client certificate whose subject CN is `commonName` (for mutual TLS). */
  client(commonName: string): TestCertificate;
}

function openssl(args: readonly string[]): void {
  execFileSync('openssl', [...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Makes a throw-away CA in `dir` with the `openssl` command (P-256 keys, valid one day). Throws
 * when openssl is missing, naming it: the TLS tests need it (Debian's `openssl` package).
 *
 * @example
 * const ca = createTestCa(dir, 'ca-1');
 * const server = ca.server();
 */
export function createTestCa(dir: string, name = 'test-ca'): TestCa {
  mkdirSync(dir, { recursive: true });
  const file = (base: string): string => join(dir, base);
  const keyArgs = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  try {
    openssl([
      'req',
      '-x509',
      ...keyArgs,
      '-keyout',
      file(`${name}.key`),
      '-out',
      file(`${name}.crt`),
      '-days',
      '1',
      '-subj',
      `/CN=${name}`,
    ]);
  } catch (err) {
    throw new Error(
      `cannot make a test CA with openssl (apt-get install -y openssl): ${(err as Error).message}`,
    );
  }
  const read = (base: string): TestCertificate => ({
    certFile: file(`${base}.crt`),
    keyFile: file(`${base}.key`),
    cert: readFileSync(file(`${base}.crt`)),
    key: readFileSync(file(`${base}.key`)),
  });
  let serial = 1;
  const issue = (base: string, commonName: string, extensions: string): TestCertificate => {
    writeFileSync(file(`${base}.ext`), extensions);
    openssl([
      'req',
      ...keyArgs,
      '-keyout',
      file(`${base}.key`),
      '-out',
      file(`${base}.csr`),
      '-subj',
      `/CN=${commonName}`,
    ]);
    openssl([
      'x509',
      '-req',
      '-in',
      file(`${base}.csr`),
      '-CA',
      file(`${name}.crt`),
      '-CAkey',
      file(`${name}.key`),
      '-set_serial',
      String(serial++),
      '-out',
      file(`${base}.crt`),
      '-days',
      '1',
      '-extfile',
      file(`${base}.ext`),
    ]);
    return read(base);
  };
  return {
    ...read(name),
    server: (base = `${name}-server`) =>
      issue(base, 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'),
    client: (commonName) =>
      issue(`${name}-client-${commonName}`, commonName, 'extendedKeyUsage=clientAuth\n'),
  };
}
