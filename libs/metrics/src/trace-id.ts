import type { TraceHeaders } from '@multiagents/core';

// W3C trace context: version 00, 32 hex trace id, 16 hex parent id, 2 hex flags.
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/;
const INVALID_TRACE_ID = '0'.repeat(32);

/**
 * The trace id of a W3C `traceparent` header when its trace is sampled, else undefined: an
 * exemplar pointing at a trace nobody recorded would lead nowhere.
 */
export function sampledTraceId(headers: TraceHeaders | undefined): string | undefined {
  const traceparent = headers?.['traceparent'];
  if (traceparent === undefined) return undefined;
  const match = TRACEPARENT.exec(traceparent);
  if (match === null) return undefined;
  const [, traceId, flags] = match as unknown as [string, string, string];
  if (traceId === INVALID_TRACE_ID || (parseInt(flags, 16) & 1) === 0) return undefined;
  return traceId;
}
