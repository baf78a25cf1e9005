/** Ledger keys, shared with the checker. */
export const LedgerKeys = {
  applied: (key: string): string => `ledger:applied:${key}`,
  calls: (key: string): string => `ledger:calls:${key}`,
  order: 'ledger:order',
} as const;
