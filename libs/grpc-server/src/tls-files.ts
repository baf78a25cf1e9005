/**
 * TLS material read from files and re-read while the server runs, so certificates rotate without a
 * restart: grpc-js swaps the secure context of its listening socket when a certificate provider
 * reports new files (`experimental.createCertificateProviderServerCredentials`).
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import { ValidationError } from '@multiagents/contracts';
import { silentLogger, type Logger } from '@multiagents/core';

/** TLS files of a server. */
export interface ServerTlsOptions {
  /** PEM certificate chain the server presents. */
  readonly certFile: string;
  /** PEM private key of that certificate. */
  readonly keyFile: string;
  /**
   * PEM bundle of the CAs that sign client certificates. With it, TLS is mutual: a client without a
   * certificate signed by one of them cannot even connect.
   */
  readonly clientCaFile?: string;
  /** How often the files are read again (ms); a changed, valid set replaces the old one. */
  readonly reloadIntervalMs?: number;
}

/** Default of {@link ServerTlsOptions.reloadIntervalMs}: one minute. */
export const DEFAULT_TLS_RELOAD_INTERVAL_MS = 60_000;

interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
}

type CaListener = (update: { caCertificate: Buffer } | null) => void;
type IdentityListener = (update: { certificate: Buffer; privateKey: Buffer } | null) => void;

/**
 * Reads the files, checks that they form a usable set (the key matches the certificate, every PEM
 * parses) and reports changes to grpc-js. A set that does not check out (a rotation half-written:
 * the new certificate with the old key) is logged and skipped: the server keeps serving with the
 * last good one and tries again at the next interval.
 */
export class WatchedTlsFiles implements experimental.CertificateProvider {
  private material: TlsMaterial;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private timer: NodeJS.Timeout | undefined;
  private reading = false;
  private closed = false;

  /** Reads the files once, now: a missing or bad file stops the service at start. */
  constructor(
    private readonly options: ServerTlsOptions,
    private readonly logger: Logger = silentLogger,
  ) {
    const material = {
      cert: readPem(options.certFile, 'certificate'),
      key: readPem(options.keyFile, 'private key'),
      ca: options.clientCaFile === undefined ? undefined : readPem(options.clientCaFile, 'client CA'),
    };
    const problem = checkMaterial(material);
    if (problem !== undefined) throw new ValidationError('invalid TLS files', [problem]);
    this.material = material;
  }

  /** True when clients must present a certificate (a client CA is configured). */
  get mutual(): boolean {
    return this.options.clientCaFile !== undefined;
  }

  /** Server credentials that follow the files. */
  serverCredentials(): ServerCredentials {
    // grpc-js 1.14 names these parameters (ca, identity) but hands them to a constructor that
    // takes (identity, ca): the identity provider goes first. Covered by the TLS tests.
    return experimental.createCertificateProviderServerCredentials(
      this,
      this.mutual ? this : null,
      this.mutual,
    );
  }

  /** Reads the files now (the interval does this by itself); resolves true when the set changed. */
  async reload(): Promise<boolean> {
    if (this.reading || this.closed) return false;
    this.reading = true;
    try {
      const [cert, key, ca] = await Promise.all([
        readFile(this.options.certFile),
        readFile(this.options.keyFile),
        this.options.clientCaFile === undefined ? undefined : readFile(this.options.clientCaFile),
      ]);
      const next: TlsMaterial = { cert, key, ca };
      if (
        next.cert.equals(this.material.cert) &&
        next.key.equals(this.material.key) &&
        (next.ca === undefined || (this.material.ca !== undefined && next.ca.equals(this.material.ca)))
      ) {
        return false;
      }
      const problem = checkMaterial(next);
      if (problem !== undefined) {
        this.logger.warn(
          { certFile: this.options.certFile, problem },
          'TLS files changed but do not form a usable set; keeping the previous certificate',
        );
        return false;
      }
      this.material = next;
      this.logger.info({ certFile: this.options.certFile }, 'TLS certificate reloaded');
      this.publish();
      return true;
    } catch (err) {
      this.logger.warn(
        { certFile: this.options.certFile, err },
        'cannot read the TLS files; keeping the previous certificate',
      );
      return false;
    } finally {
      this.reading = false;
    }
  }

  /** Stops re-reading. */
  close(): void {
    this.closed = true;
    this.stopTimer();
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    this.startTimer();
    process.nextTick(() => this.caListeners.has(listener) && listener(this.caUpdate()));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
    this.maybeStopTimer();
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    this.startTimer();
    process.nextTick(() => this.identityListeners.has(listener) && listener(this.identityUpdate()));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
    this.maybeStopTimer();
  }

  private caUpdate(): { caCertificate: Buffer } | null {
    return this.material.ca === undefined ? null : { caCertificate: this.material.ca };
  }

  private identityUpdate(): { certificate: Buffer; privateKey: Buffer } {
    return { certificate: this.material.cert, privateKey: this.material.key };
  }

  private publish(): void {
    for (const listener of this.identityListeners) listener(this.identityUpdate());
    for (const listener of this.caListeners) listener(this.caUpdate());
  }

  private startTimer(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setInterval(
      () => void this.reload(),
      this.options.reloadIntervalMs ?? DEFAULT_TLS_RELOAD_INTERVAL_MS,
    );
    this.timer.unref();
  }

  private maybeStopTimer(): void {
    if (this.caListeners.size === 0 && this.identityListeners.size === 0) this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * Every problem with a set of TLS files, now (unreadable, not PEM, a key that does not match its
 * certificate): config modules call it so a bad file stops the service at start with exit 78.
 */
export function checkServerTlsFiles(options: ServerTlsOptions): string[] {
  try {
    new WatchedTlsFiles(options).close();
    return [];
  } catch (err) {
    if (err instanceof ValidationError) return [...err.problems];
    throw err;
  }
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ValidationError('invalid TLS files', [
      `cannot read the ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    ]);
  }
}

/** Why this set cannot serve (the key does not match, a PEM does not parse), or undefined. */
function checkMaterial(material: TlsMaterial): string | undefined {
  try {
    createSecureContext({
      cert: material.cert,
      key: material.key,
      ...(material.ca === undefined ? {} : { ca: material.ca }),
    });
    return undefined;
  } catch (err) {
    return `the certificate, key and CA files do not form a usable set: ${(err as Error).message}`;
  }
}
