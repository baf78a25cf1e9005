/**
 * The .proto sources server reflection describes. ts-proto's generated code carries no
 * descriptors, so reflection is built from the same files `pnpm proto:generate` reads, loaded
 * with proto-loader at start.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';

/** The API's files, relative to the proto root. */
export const API_PROTO_FILES = [
  'multiagents/v1/orchestrator.proto',
  'multiagents/v1/worker_manager.proto',
  'multiagents/v1/event_monitor.proto',
];

const MARKER = join('multiagents', 'v1', 'orchestrator.proto');

/**
 * The repository's `proto/` folder, found by walking up from `from` (this file's folder: `src/grpc`
 * when run from source, `dist/grpc` when built, or wherever an image copied both). Throws when
 * there is none, naming where it looked.
 */
export function findProtoDir(from: string = __dirname): string {
  const looked: string[] = [];
  let dir = resolve(from);
  for (let depth = 0; depth < 8; depth++) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, MARKER))) return candidate;
    looked.push(candidate);
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(
    `cannot find the proto/ folder (with ${MARKER}) for server reflection; looked in ${looked.join(', ')}. ` +
      'Copy proto/ next to the app or pass protoDir.',
  );
}

/** The API services plus grpc.health.v1, as one package definition for the reflection service. */
export function loadReflectionPackage(protoDir: string): PackageDefinition {
  // health.proto lives at <root>/health/v1/health.proto inside grpc-health-check.
  const healthRoot = resolve(dirname(healthProtoPath), '..', '..');
  return loadSync([...API_PROTO_FILES, 'health/v1/health.proto'], {
    includeDirs: [protoDir, healthRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
}
