import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/** One span as an OTLP receiver got it (ids in lowercase hex, times in ms since the epoch). */
export interface ReceivedSpan {
  readonly serviceName: string;
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
}

/** OTLP span kinds, as numbers on the wire. */
export const OtlpSpanKind = { Internal: 1, Server: 2, Client: 3, Producer: 4, Consumer: 5 } as const;

/** A minimal protobuf wire reader: enough for OTLP's ExportTraceServiceRequest. */
class Reader {
  pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly end = buf.length,
  ) {}
  done(): boolean {
    return this.pos >= this.end;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = this.buf[this.pos++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  }
  tag(): { field: number; wire: number } {
    const key = Number(this.varint());
    return { field: key >>> 3, wire: key & 7 };
  }
  bytes(): Buffer {
    const length = Number(this.varint());
    const slice = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return slice;
  }
  fixed64(): Buffer {
    const slice = this.buf.subarray(this.pos, this.pos + 8);
    this.pos += 8;
    return slice;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
  /** Calls `each` for every field of the message. */
  static fields(buf: Buffer, each: (field: number, wire: number, r: Reader) => boolean): void {
    const r = new Reader(buf);
    while (!r.done()) {
      const { field, wire } = r.tag();
      if (!each(field, wire, r)) r.skip(wire);
    }
  }
}

function anyValue(buf: Buffer): string | number | boolean {
  let value: string | number | boolean = '';
  Reader.fields(buf, (field, wire, r) => {
    if (field === 1 && wire === 2) value = r.bytes().toString('utf8');
    else if (field === 2 && wire === 0) value = r.varint() !== 0n;
    else if (field === 3 && wire === 0) value = Number(BigInt.asIntN(64, r.varint()));
    else if (field === 4 && wire === 1) value = r.fixed64().readDoubleLE(0);
    else return false;
    return true;
  });
  return value;
}

function keyValues(buffers: readonly Buffer[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const buf of buffers) {
    let key = '';
    let value: string | number | boolean = '';
    Reader.fields(buf, (field, wire, r) => {
      if (field === 1 && wire === 2) key = r.bytes().toString('utf8');
      else if (field === 2 && wire === 2) value = anyValue(r.bytes());
      else return false;
      return true;
    });
    out[key] = value;
  }
  return out;
}

function nanosToMs(buf: Buffer): number {
  return Number(buf.readBigUInt64LE(0) / 1_000_000n);
}

/** Decodes an OTLP/HTTP protobuf ExportTraceServiceRequest into its spans. */
export function decodeOtlpTraces(body: Buffer): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  Reader.fields(body, (field, wire, r) => {
    if (field !== 1 || wire !== 2) return false;
    const resourceSpans = r.bytes();
    let serviceName = '';
    const scopeSpans: Buffer[] = [];
    Reader.fields(resourceSpans, (f, w, rr) => {
      if (f === 1 && w === 2) {
        const attributes: Buffer[] = [];
        Reader.fields(rr.bytes(), (ff, ww, r3) => {
          if (ff !== 1 || ww !== 2) return false;
          attributes.push(r3.bytes());
          return true;
        });
        serviceName = String(keyValues(attributes)['service.name'] ?? '');
      } else if (f === 2 && w === 2) scopeSpans.push(rr.bytes());
      else return false;
      return true;
    });
    for (const scope of scopeSpans) {
      Reader.fields(scope, (f, w, rr) => {
        if (f !== 2 || w !== 2) return false;
        spans.push(decodeSpan(rr.bytes(), serviceName));
        return true;
      });
    }
    return true;
  });
  return spans;
}

function decodeSpan(buf: Buffer, serviceName: string): ReceivedSpan {
  const span = {
    serviceName,
    traceId: '',
    spanId: '',
    parentSpanId: '',
    name: '',
    kind: 0,
    startMs: 0,
    endMs: 0,
    statusCode: 0,
  };
  const attributes: Buffer[] = [];
  Reader.fields(buf, (field, wire, r) => {
    if (field === 1 && wire === 2) span.traceId = r.bytes().toString('hex');
    else if (field === 2 && wire === 2) span.spanId = r.bytes().toString('hex');
    else if (field === 4 && wire === 2) span.parentSpanId = r.bytes().toString('hex');
    else if (field === 5 && wire === 2) span.name = r.bytes().toString('utf8');
    else if (field === 6 && wire === 0) span.kind = Number(r.varint());
    else if (field === 7 && wire === 1) span.startMs = nanosToMs(r.fixed64());
    else if (field === 8 && wire === 1) span.endMs = nanosToMs(r.fixed64());
    else if (field === 9 && wire === 2) attributes.push(r.bytes());
    else if (field === 15 && wire === 2) {
      Reader.fields(r.bytes(), (f, w, rr) => {
        if (f !== 3 || w !== 0) return false;
        span.statusCode = Number(rr.varint());
        return true;
      });
    } else return false;
    return true;
  });
  return { ...span, attributes: keyValues(attributes) };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * A real OTLP/HTTP receiver for tests (there is no Jaeger or Collector binary here): accepts
 * `POST /v1/traces` in protobuf (optionally gzip), decodes every span and keeps them in order of
 * arrival. Point a service at it with `OTEL_EXPORTER_OTLP_ENDPOINT=<receiver.url>`.
 *
 * @example
 * const receiver = await OtlpReceiver.start();
 * // … run traced services with OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url …
 * await waitFor(() => receiver.spans.some((s) => s.name.startsWith('workflow.run')));
 */
export class OtlpReceiver {
  /** Every span received so far. */
  readonly spans: ReceivedSpan[] = [];
  /** Requests received (protobuf bodies), and those that failed to decode. */
  readonly requests = { received: 0, rejected: 0 };

  private readonly server: Server;
  private port = 0;

  private constructor() {
    this.server = createServer((req, res) => {
      void readBody(req).then((raw) => this.receive(req, raw, res));
    });
  }

  /** `http://127.0.0.1:<port>`: the OTEL_EXPORTER_OTLP_ENDPOINT of the services under test. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Listens on a free loopback port. */
  static async start(): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver();
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    receiver.port = (receiver.server.address() as AddressInfo).port;
    return receiver;
  }

  private receive(req: IncomingMessage, raw: Buffer, res: ServerResponse): void {
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    this.requests.received++;
    try {
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
      this.spans.push(...decodeOtlpTraces(body));
    } catch {
      this.requests.rejected++;
      res.writeHead(400).end();
      return;
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Buffer.alloc(0));
  }

  /** The spans of one trace. */
  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
