/** Removes the folder the global setup packed into. */
import { rmSync } from 'node:fs';
import { PACKED_CLONE_VARIABLE } from './repo';

export default function globalTeardown(): void {
  const clone = process.env[PACKED_CLONE_VARIABLE];
  if (clone !== undefined && clone !== '') rmSync(clone, { recursive: true, force: true });
}
