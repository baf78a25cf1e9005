/** Ledger keys, shared with the checker. */
export const LedgerKeys = {
  applied: (key: string): string => `ledger:applied:${key}`,
  calls: (key: string): string => `ledger:calls:${key}`,
  /** Which replicas called a key's worker, in order (FAULT_REPLICA of each call). */
  callers: (key: string): string => `ledger:callers:${key}`,
  order: 'ledger:order',
  /** How many commands a holding replica took so far (it holds the first FAULT_HOLD_COMMANDS). */
  holdCount: 'ledger:hold-count',
  /** Idempotency keys whose command a replica is holding (effect applied, no result yet). */
  held: 'ledger:held',
  /** Set by the test: holding replicas let their held commands finish. */
  release: 'ledger:release',
} as const;
