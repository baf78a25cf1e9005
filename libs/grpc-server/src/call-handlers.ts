/**
 * What every gRPC handler shares: tolerant request decoding (malformed bytes are an
 * INVALID_ARGUMENT answer, not grpc-js's generic INTERNAL), a server-side deadline on every call,
 * error mapping by code, and logging of unexpected errors (their stacks never reach the caller).
 */
import {
  status,
  type handleUnaryCall,
  type MethodDefinition,
  type ServerUnaryCall,
  type ServiceDefinition,
  type StatusObject,
} from '@grpc/grpc-js';
import type { JsonBounds } from '@multiagents/contracts';
import type { Logger } from '@multiagents/core';
import { toGrpcStatus } from './grpc-error';

/** Stands in for a request whose bytes did not decode; handlers answer INVALID_ARGUMENT. */
export class MalformedRequest {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {}

  /** The status to answer with. */
  toStatus(): Partial<StatusObject> & { code: status; details: string } {
    return {
      code: status.INVALID_ARGUMENT,
      details: `malformed request to ${this.path}: not a valid protobuf message (${this.reason})`,
    };
  }
}

/**
 * The same service definition, but a request that fails to decode becomes a
 * {@link MalformedRequest} value instead of a throw (which grpc-js turns into INTERNAL).
 */
export function tolerantService<S extends ServiceDefinition>(service: S): S {
  const out: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service) as [string, MethodDefinition<unknown, unknown>][]) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new MalformedRequest(method.path, err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return out as S;
}

/** Milliseconds left for a call: the client's deadline, capped by the server's limit. */
export function remainingMs(deadline: Date | number, serverLimitMs: number): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  const clientLeft = Number.isFinite(at) ? at - Date.now() : Number.POSITIVE_INFINITY;
  return Math.max(0, Math.min(clientLeft, serverLimitMs));
}

/** What unary handlers are given. */
export interface HandlerContext {
  readonly logger: Logger;
  /** Server-side limit on one unary call, whatever deadline the client set (or none). */
  readonly maxCallMs: number;
  /** Size and depth bounds of JSON a request carries (inputs, payloads, outputs). */
  readonly jsonBounds: Pick<JsonBounds, 'maxBytes' | 'maxDepth'>;
}

/**
 * Wraps an async implementation as a grpc-js unary handler: decodes tolerantly, answers
 * DEADLINE_EXCEEDED when the call outlives its budget, maps thrown errors by code, logs the
 * unexpected ones. `limitMs` overrides the server's limit for one slow method (Drain).
 */
export function unaryCall<Req, Res>(
  context: HandlerContext,
  method: string,
  implementation: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
  limitMs?: (request: Req) => number,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const request: unknown = call.request;
    if (request instanceof MalformedRequest) {
      callback(request.toStatus());
      return;
    }
    let settled = false;
    const budgetMs = remainingMs(call.getDeadline(), limitMs?.(request as Req) ?? context.maxCallMs);
    const timer = setTimeout(() => {
      settle({
        code: status.DEADLINE_EXCEEDED,
        details: `${method} did not finish within ${Math.round(budgetMs)} ms (the call's deadline or the server's limit)`,
      });
    }, budgetMs);
    const settle = (error: Partial<StatusObject> | null, response?: Res): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      callback(error, response);
    };
    // The client gave up (cancelled, or its own deadline passed): nobody reads an answer.
    call.once('cancelled', () => {
      settled = true;
      clearTimeout(timer);
    });
    implementation(request as Req, call).then(
      (response) => settle(null, response),
      (err: unknown) => {
        const mapped = toGrpcStatus(err);
        if (mapped.unexpected) context.logger.error({ method, err }, 'gRPC handler failed');
        settle(mapped.status);
      },
    );
  };
}
