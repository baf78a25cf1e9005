export { HealthServer } from '@multiagents/telemetry';
