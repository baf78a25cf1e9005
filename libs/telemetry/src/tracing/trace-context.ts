import {
  createTraceState,
  ROOT_CONTEXT,
  trace,
  TraceFlags,
  type Context,
  type SpanContext,
} from '@opentelemetry/api';
import type { TraceHeaders } from '@multiagents/core';

/** W3C trace-context header names as they travel on envelopes and in run records. */
export const TRACEPARENT = 'traceparent';
/** W3C `tracestate`, kept next to `traceparent` when the caller sent one. */
export const TRACESTATE = 'tracestate';

/**
 * True when `headers` carry a `traceparent` whose sampled flag is set. The one check an unsampled
 * or untraced run costs on the hot path: no parsing, no allocation.
 */
export function isSampled(headers: TraceHeaders | undefined): boolean {
  const value = headers?.[TRACEPARENT];
  // `00-<32 hex>-<16 hex>-<2 hex>`: 55 characters; the sampled bit is the low bit of the last digit.
  if (value === undefined || value.length !== 55) return false;
  const last = value.charCodeAt(54);
  // '1','3',…,'9' (odd digits) and 'b','d','f' (odd letters) have their low bit set.
  return (last >= 48 && last <= 57 ? last - 48 : last - 87) % 2 === 1;
}

/** True when `text[from, from + length)` is lowercase hex and not all zeros. */
function isLowerHexId(text: string, from: number, length: number): boolean {
  let nonZero = false;
  for (let i = from; i < from + length; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
    if (c !== 48) nonZero = true;
  }
  return nonZero;
}

/**
 * The remote span context `headers` name, or undefined when there is none or it is malformed
 * (version 00 only). Parsed by position, without a regular expression: it runs once per traced
 * transition.
 */
export function parseTraceHeaders(headers: TraceHeaders | undefined): SpanContext | undefined {
  const value = headers?.[TRACEPARENT];
  if (value === undefined || value.length !== 55) return undefined;
  if (!value.startsWith('00-') || value[35] !== '-' || value[52] !== '-') return undefined;
  if (!isLowerHexId(value, 3, 32) || !isLowerHexId(value, 36, 16)) return undefined;
  const flags = parseInt(value.slice(53), 16);
  if (Number.isNaN(flags)) return undefined;
  const tracestate = headers?.[TRACESTATE];
  return {
    traceId: value.slice(3, 35),
    spanId: value.slice(36, 52),
    traceFlags: flags & TraceFlags.SAMPLED,
    isRemote: true,
    ...(tracestate === undefined || tracestate === '' ? {} : { traceState: createTraceState(tracestate) }),
  };
}

/** The context whose parent is the span `headers` name (the root context when there is none). */
export function contextFromHeaders(headers: TraceHeaders | undefined): Context {
  const parent = parseTraceHeaders(headers);
  return parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
}

/** `traceparent` (and `tracestate` when set) of a span context. */
export function formatTraceHeaders(spanContext: SpanContext): Record<string, string> {
  const flags = spanContext.traceFlags & TraceFlags.SAMPLED ? '01' : '00';
  const headers: Record<string, string> = {
    [TRACEPARENT]: `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`,
  };
  const state = spanContext.traceState?.serialize();
  if (state) headers[TRACESTATE] = state;
  return headers;
}
