/**
 * The dashboard's actions against an orchestrator that serves TLS (mutual): an orchestrator
 * and two event-monitors as processes over a private redis-server. One monitor has the CA and a
 * client certificate (MULTIAGENTS_ORCHESTRATOR_TLS_*): its dashboard cancels a run. The other
 * has neither: its action is refused with the orchestrator unreachable, and nothing changes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import { RunState, type WorkflowDefinition } from '@multiagents/contracts';
import {
  createTestCa,
  freePort,
  ServiceProcess,
  startRedisServer,
  type ServerProcess,
  type TestCa,
} from '@multiagents/testing';

const REPO_ROOT = join(__dirname, '..', '..', '..');

const HELD: WorkflowDefinition = {
  id: 'held',
  version: 1,
  steps: [{ name: 'approve', kind: 'wait', signal: 'approved', timeoutMs: 600_000 }],
};

/** Posts a dashboard action as the page would: its CSRF token, from the same origin. */
async function act(base: string, path: string): Promise<{ status: number; body: string }> {
  const page = await (await fetch(`${base}/`)).text();
  const token = /"x-csrf-token": "([^"]+)"/.exec(page)?.[1];
  if (token === undefined) throw new Error(`no CSRF token on the page:\n${page}`);
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
    body: new URLSearchParams({ _csrf: token }).toString(),
  });
  return { status: res.status, body: await res.text() };
}

describe('dashboard actions over TLS to the orchestrator', () => {
  let broker: ServerProcess;
  let dir: string;
  let ca: TestCa;
  let services: ServiceProcess[] = [];
  let client: MultiAgentsClient;
  let trusted: string;
  let untrusted: string;

  beforeAll(async () => {
    execFileSync(
      'bash',
      ['scripts/build-quiet.sh', '@multiagents/orchestrator', '@multiagents/event-monitor'],
      { cwd: REPO_ROOT, stdio: 'inherit', timeout: 600_000 },
    );
    broker = await startRedisServer();
    dir = mkdtempSync(join(tmpdir(), 'dashboard-tls-'));
    ca = createTestCa(dir, 'dashboard-ca');
    const server = ca.server();
    const monitorCert = ca.client('event-monitor');
    const common = {
      MULTIAGENTS_BACKEND: 'redis',
      REDIS_URL: broker.url,
      MULTIAGENTS_PREFIX: `dashboard-tls-${process.pid}`,
      LOG_LEVEL: 'warn',
    };
    const logDir = join(REPO_ROOT, 'tmp', 'dashboard-tls', String(process.pid));
    const orchestratorPort = await freePort();
    // By name: the certificate says localhost (and Node warns when a server name is an IP).
    const address = `localhost:${orchestratorPort}`;
    const orchestrator = new ServiceProcess(
      'orchestrator',
      join(REPO_ROOT, 'apps/orchestrator/dist/main.js'),
      {
        ...common,
        GRPC_PORT: String(orchestratorPort),
        MULTIAGENTS_TLS_CERT: server.certFile,
        MULTIAGENTS_TLS_KEY: server.keyFile,
        MULTIAGENTS_TLS_CLIENT_CA: ca.certFile,
      },
      logDir,
      await freePort(),
    );
    const monitor = async (name: string, tls: Record<string, string>): Promise<ServiceProcess> =>
      new ServiceProcess(
        name,
        join(REPO_ROOT, 'apps/event-monitor/dist/main.js'),
        { ...common, GRPC_PORT: String(await freePort()), MULTIAGENTS_ORCHESTRATOR_ADDRESS: address, ...tls },
        logDir,
        await freePort(),
      );
    const withTls = await monitor('event-monitor-tls', {
      MULTIAGENTS_ORCHESTRATOR_TLS_CA: ca.certFile,
      MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_CERT: monitorCert.certFile,
      MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_KEY: monitorCert.keyFile,
    });
    const without = await monitor('event-monitor-plain', {});
    services = [orchestrator, withTls, without];
    await Promise.all(services.map((s) => s.start()));
    trusted = `http://127.0.0.1:${withTls.httpPort}`;
    untrusted = `http://127.0.0.1:${without.httpPort}`;
    const caller = ca.client('test');
    client = connect(address, { tls: { ca: ca.cert, cert: caller.cert, key: caller.key } });
    await client.registerWorkflow(HELD);
  }, 720_000);

  afterAll(async () => {
    client?.close();
    await Promise.all(services.map((s) => s.stop()));
    await broker?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('acts through the orchestrator with the configured CA and client certificate; without them the action is refused', async () => {
    const { txId } = await client.startWorkflow(HELD.id, {});
    const refused = await act(untrusted, `/runs/${txId}/cancel`);
    expect(refused.status).toBe(502);
    expect(refused.body).toContain('The orchestrator refused');
    expect((await client.getWorkflow(txId)).state).toBe(RunState.Waiting);

    const done = await act(trusted, `/runs/${txId}/cancel`);
    expect(done.status).toBe(303);
    const run = await client.getWorkflow(txId);
    expect([RunState.Cancelling, RunState.Cancelled]).toContain(run.state);
  });
});
