import { PayloadRejectedError } from '@multiagents/contracts';

/** Options of the sealing stores ({@link SealingRunStore}, {@link SealingMemoStore}, {@link SealingTimelineStore}). */
export interface SealingOptions {
  /**
   * Reads values found in plaintext at rest as data written before encryption was turned on
   * (MULTIAGENTS_PAYLOAD_ACCEPT_PLAINTEXT=true), for the time such data is still kept. Off by
   * default: with payload keys every value must be sealed, so a process that can write to the
   * broker but holds no key cannot plant one (PAYLOAD_REJECTED).
   */
  readonly acceptPlaintext?: boolean;
}

/** The error for a value found in plaintext where a sealed one belongs. */
export function plaintextRefused(place: string): PayloadRejectedError {
  return new PayloadRejectedError(
    'plaintext',
    `the value for ${place} is stored in plaintext while payload keys are set ` +
      '(MULTIAGENTS_PAYLOAD_ACCEPT_PLAINTEXT=true reads data written before encryption was turned on)',
  );
}
