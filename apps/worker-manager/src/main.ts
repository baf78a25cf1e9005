/**
 * The worker-manager service: hosts the workers of MULTIAGENTS_WORKER_MODULES as one replica of the
 * `workers` consumer group on a shared backend. Replicas scale by starting more.
 */
import { loadConfig } from './config';

try {
  loadConfig();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(78); // EX_CONFIG
}
