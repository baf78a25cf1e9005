import { status, type Metadata } from '@grpc/grpc-js';
import { tokenExpiry } from './authorization-interceptor';
import { remainingMs } from './call-handlers';

/** How long a server stream may run, and the status it ends with then. */
export interface StreamBudget {
  readonly ms: number;
  readonly end: { readonly code: status; readonly details: string };
}

/**
 * A server stream's time: the client's deadline capped by the server's limit (it then ends
 * DEADLINE_EXCEEDED), or less when the caller's token expires first (it then ends
 * UNAUTHENTICATED: a stream never goes on past the credentials that opened it).
 */
export function streamBudget(
  call: { getDeadline(): Date | number; readonly metadata: Metadata },
  serverLimitMs: number,
): StreamBudget {
  const ms = remainingMs(call.getDeadline(), serverLimitMs);
  const expiresAt = tokenExpiry(call.metadata);
  const tokenLeft = expiresAt === undefined ? Number.POSITIVE_INFINITY : Math.max(0, expiresAt - Date.now());
  if (tokenLeft < ms) {
    return {
      ms: tokenLeft,
      end: {
        code: status.UNAUTHENTICATED,
        details: 'the token that opened this stream has expired: authenticate again and watch again',
      },
    };
  }
  return {
    ms,
    end: {
      code: status.DEADLINE_EXCEEDED,
      details: `watch ended after ${Math.round(ms)} ms (the call's deadline or the server's limit); watch again to go on`,
    },
  };
}
