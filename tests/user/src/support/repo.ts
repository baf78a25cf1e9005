import { resolve } from 'node:path';

/** The root of this checkout. */
export const ROOT = resolve(__dirname, '..', '..', '..', '..');

/**
 * Set by the global setup: a temporary folder standing in for "your clone" in the README, whose
 * `dist/packages/` holds the tarballs packed from this checkout.
 */
export const PACKED_CLONE_VARIABLE = 'MULTIAGENTS_USER_TESTS_CLONE';

/** Nx projects the tests run from dist/: every public package, plus what the README starts. */
export const PROJECTS_TO_BUILD = ['@multiagents/orchestrator', '@multiagents/example-order-processing'];

/** The folder whose `dist/packages/` holds this run's tarballs (see {@link PACKED_CLONE_VARIABLE}). */
export function packedClone(): string {
  const dir = process.env[PACKED_CLONE_VARIABLE];
  if (dir === undefined || dir === '') {
    throw new Error(
      `${PACKED_CLONE_VARIABLE} is not set: run these tests with Jest (its global setup packs)`,
    );
  }
  return dir;
}
