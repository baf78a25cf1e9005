/** Resolves after `ms` of real time: for bounded "nothing else happens" checks against brokers. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
