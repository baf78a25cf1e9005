import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { validate, ValidationSeverity, type ValidatorSettings } from 'dockerfile-utils';
import { HealthServer } from '@multiagents/telemetry';
import { APP_SERVICES, COMPOSE_FILE, loadCompose, readRepoFile, ROOT } from './support/compose';
import { chain, dockerfile, dockerfileText, imageEnv, last } from './support/dockerfile';

const text = dockerfileText;

/** Every rule of the linter on, as warnings at least (some are off by default). */
const STRICT: ValidatorSettings = {
  deprecatedMaintainer: ValidationSeverity.ERROR,
  directiveCasing: ValidationSeverity.ERROR,
  emptyContinuationLine: ValidationSeverity.ERROR,
  instructionCasing: ValidationSeverity.ERROR,
  instructionCmdMultiple: ValidationSeverity.ERROR,
  instructionEntrypointMultiple: ValidationSeverity.ERROR,
  instructionHealthcheckMultiple: ValidationSeverity.ERROR,
  instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
  instructionWorkdirRelative: ValidationSeverity.ERROR,
};

/** The stages docker-compose.yml builds: the images users run. */
const targets = APP_SERVICES.map((app) => loadCompose(COMPOSE_FILE).services[app]?.build?.target as string);

describe('infra/Dockerfile', () => {
  it('passes the Dockerfile linter (dockerfile-utils) with every rule on', () => {
    expect(validate(text, STRICT)).toEqual([]);
    // …which does report mistakes: the check can fail.
    const broken = validate('FROM node:20\nMAINTAINER me\nHEALTHCHECK CMD a\nHEALTHCHECK CMD b\n', STRICT);
    expect(broken.length).toBeGreaterThanOrEqual(2);
  });

  it.each(targets)('the %s image runs as a non-root user', (target) => {
    const user = last(chain(target), 'USER');
    expect(user?.getArgumentsContent()).toBeDefined();
    expect(user?.getArgumentsContent()).not.toMatch(/^(root|0)(:|$)/);
  });

  it.each(targets)('the %s image has a HEALTHCHECK on /healthz of HTTP_PORT', (target) => {
    const healthcheck = last(chain(target), 'HEALTHCHECK');
    expect(healthcheck?.getArgumentsContent()).toMatch(
      /CMD \["node", "\/opt\/multiagents\/healthcheck\.cjs", "\/healthz"\]$/,
    );
    expect(imageEnv(target)['HTTP_PORT']).toMatch(/^[1-9][0-9]*$/);
  });

  it.each(targets)('the %s image starts node in exec form (node is PID 1 and gets SIGTERM)', (target) => {
    const instructions = chain(target);
    const cmd = last(instructions, 'CMD');
    expect(cmd?.getArgumentsContent()).toBe('["node", "dist/main.js"]');
    expect(last(instructions, 'ENTRYPOINT')).toBeUndefined();
    const stop = last(instructions, 'STOPSIGNAL');
    expect(stop === undefined || stop.getArgumentsContent() === 'SIGTERM').toBe(true);
  });

  it('sets no secret in ENV or ARG, and ignores .env in the build context', () => {
    const secret = /SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|_KEY\b|_KEYS\b|API_?KEY/i;
    for (const instruction of dockerfile.getInstructions()) {
      if (!['ENV', 'ARG'].includes(instruction.getKeyword())) continue;
      const names = (instruction.getArgumentsContent() ?? '').split(/\s+/).map((part) => part.split('=')[0]);
      expect({
        line: instruction.getRange().start.line + 1,
        secrets: names.filter((n) => secret.test(n ?? '')),
      }).toEqual({
        line: instruction.getRange().start.line + 1,
        secrets: [],
      });
    }
    expect(readRepoFile('infra/Dockerfile.dockerignore').split('\n')).toEqual(
      expect.arrayContaining(['.env', '**/node_modules', '.git']),
    );
  });

  it('ships each app deployed with production dependencies only, never the workspace', () => {
    expect(text).toMatch(/^RUN bash infra\/deploy-apps\.sh \/deploy$/m);
    expect(readRepoFile('infra/deploy-apps.sh')).toMatch(/pnpm --filter "@multiagents\/\$app" deploy --prod/);
    for (const target of targets) {
      const fromBuild = chain(target).filter(
        (i) => i.getKeyword() === 'COPY' && i.getTextContent().includes('--from=build'),
      );
      expect(fromBuild.length).toBeGreaterThan(0);
      for (const copy of fromBuild) {
        expect(copy.getTextContent()).toMatch(/^COPY --from=build --chown=node:node \/deploy\//);
      }
    }
  });

  it('copies the patches pnpm-workspace.yaml names before `pnpm fetch` (which applies them)', () => {
    const patches = [...readRepoFile('pnpm-workspace.yaml').matchAll(/:\s*(patches\/\S+\.patch)\s*$/gm)].map(
      (m) => m[1] as string,
    );
    expect(patches.length).toBeGreaterThan(0);
    const instructions = dockerfile.getInstructions();
    const fetchAt = instructions.findIndex(
      (i) => i.getKeyword() === 'RUN' && /pnpm fetch/.test(i.getTextContent()),
    );
    expect(fetchAt).toBeGreaterThan(0);
    const copiedBefore = instructions
      .slice(0, fetchAt)
      .filter((i) => i.getKeyword() === 'COPY')
      .flatMap((i) => (i.getArguments() ?? []).map((a) => a.getValue()).slice(0, -1));
    for (const patch of patches) {
      const copied = copiedBefore.some(
        (source) => patch === source || patch.startsWith(`${source.replace(/\/$/, '')}/`),
      );
      expect({ patch, copied }).toEqual({ patch, copied: true });
    }
  });

  it('copies only files that exist in the build context', () => {
    for (const copy of dockerfile.getInstructions().filter((i) => i.getKeyword() === 'COPY')) {
      const args = (copy.getArguments() ?? []).map((a) => a.getValue()).filter((a) => !a.startsWith('--'));
      if (copy.getTextContent().includes('--from=')) continue;
      for (const source of args.slice(0, -1)) {
        expect({ source, exists: source === '.' || existsSync(join(ROOT, source)) }).toEqual({
          source,
          exists: true,
        });
      }
    }
  });
});

describe('infra/healthcheck.cjs, the containers’ probe', () => {
  let server: HealthServer;
  let port: number;

  beforeEach(async () => {
    server = new HealthServer();
    port = await server.listen(0);
  });
  afterEach(() => server.close());

  function probe(path: string, env: NodeJS.ProcessEnv): Promise<number | null> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [join(ROOT, 'infra', 'healthcheck.cjs'), path], {
        env: { PATH: process.env['PATH'], ...env },
        stdio: 'ignore',
      });
      child.once('error', reject);
      child.once('exit', (code) => resolve(code));
    });
  }

  it("exits 0 on the service's /healthz, and on /readyz only once it is ready", async () => {
    expect(await probe('/healthz', { HTTP_PORT: String(port) })).toBe(0);
    expect(await probe('/readyz', { HTTP_PORT: String(port) })).toBe(1);
    server.setReady(true);
    expect(await probe('/readyz', { HTTP_PORT: String(port) })).toBe(0);
  });

  it('exits 1 when nothing answers on HTTP_PORT', async () => {
    await server.close();
    expect(await probe('/healthz', { HTTP_PORT: String(port) })).toBe(1);
    server = new HealthServer();
  });
});
