import type {
  DeadLetterView,
  MonitoredWorkerManagerView,
  StuckRunView,
  TimelineTransition,
} from '@multiagents/client';
import { formatDuration, formatTime, textTable } from './text-table';

function detailsOf(event: Readonly<Record<string, unknown>>): string {
  const parts: string[] = [];
  const duration = event['durationMs'];
  if (typeof duration === 'number') parts.push(formatDuration(duration));
  const delay = event['delayMs'];
  if (typeof delay === 'number') parts.push(`retry in ${formatDuration(delay)}`);
  const worker = event['worker'];
  if (typeof worker === 'string') parts.push(worker);
  const error = event['error'];
  if (typeof error === 'object' && error !== null) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    parts.push(
      `${typeof code === 'string' ? code : 'error'}: ${typeof message === 'string' ? message : ''}`.trim(),
    );
  }
  return parts.join('; ');
}

/** A run's timeline, one line per lifecycle event, with the time since the first transition. */
export function timelineTable(entries: readonly TimelineTransition[]): string[] {
  const start = entries[0]?.time ?? 0;
  const rows: string[][] = [];
  for (const entry of entries) {
    const events = entry.events.length > 0 ? entry.events : [undefined];
    for (const event of events) {
      rows.push([
        `v${entry.version}`,
        `+${formatDuration(entry.time - start)}`,
        event?.state ?? entry.state,
        event?.type ?? '',
        event?.step ?? '',
        event?.attempt === undefined ? '' : String(event.attempt),
        event === undefined ? '' : detailsOf(event),
      ]);
    }
  }
  return textTable(['VERSION', 'AT', 'STATE', 'EVENT', 'STEP', 'ATTEMPT', 'DETAILS'], rows);
}

/** Stuck runs, longest stuck first. */
export function stuckRunTable(runs: readonly StuckRunView[], now: number): string[] {
  return textTable(
    ['TXID', 'WORKFLOW', 'STATE', 'NO PROGRESS FOR', 'THRESHOLD', 'STEPS'],
    runs.map((run) => [
      run.txId,
      run.workflowId,
      run.state,
      formatDuration(now - run.lastProgressAt),
      formatDuration(run.thresholdMs),
      run.steps.join(','),
    ]),
  );
}

/** Dead letters with their reason. */
export function deadLetterTable(letters: readonly DeadLetterView[]): string[] {
  return textTable(
    ['TOPIC', 'ID', 'GROUP', 'DELIVERIES', 'DEAD AT', 'TXID', 'ERROR'],
    letters.map((letter) => [
      letter.topic,
      letter.id,
      letter.group,
      String(letter.deliveryCount),
      formatTime(letter.deadAt),
      letter.envelope?.txId ?? '',
      letter.error.length > 120 ? `${letter.error.slice(0, 117)}...` : letter.error,
    ]),
  );
}

/**
 * Worker-manager replicas, live and gone. LINGERING: handlers past their attempts (holding slots)
 * at the replica's last heartbeat.
 */
export function workerManagerTable(managers: readonly MonitoredWorkerManagerView[], now: number): string[] {
  return textTable(
    ['MANAGER', 'STATUS', 'IN FLIGHT', 'LINGERING', 'CAPACITY', 'LAST SEEN', 'WORKERS'],
    managers.map((m) => [
      m.managerId,
      m.live ? 'live' : 'gone',
      String(m.inFlight),
      String(m.lingering),
      String(m.capacity),
      `${formatDuration(now - m.seenAt)} ago`,
      m.workers.join(','),
    ]),
  );
}
