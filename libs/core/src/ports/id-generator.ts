import { randomUUID } from 'node:crypto';

/** Where new ids come from (transaction ids, consumer names). Injected for deterministic tests. */
export interface IdGenerator {
  next(): string;
}

/** Random UUIDs (v4). */
export const uuidGenerator: IdGenerator = { next: () => randomUUID() };
