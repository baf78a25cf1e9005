import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_PROTO_FILES, findProtoDir, loadReflectionPackage } from './proto-files';

describe('proto files for reflection', () => {
  it('finds proto/ from the source folder and from a built dist folder', () => {
    const fromSource = findProtoDir(__dirname);
    for (const file of API_PROTO_FILES) expect(existsSync(join(fromSource, file))).toBe(true);
    expect(findProtoDir(join(__dirname, '..', '..', 'dist', 'grpc'))).toBe(fromSource);
  });

  it('says where it looked when there is no proto/', () => {
    const dir = mkdtempSync(join(tmpdir(), 'no-proto-'));
    try {
      const deep = join(dir, 'a', 'b');
      mkdirSync(deep, { recursive: true });
      expect(() => findProtoDir(deep)).toThrow(/cannot find the proto\/ folder.*looked in .*a\/b\/proto/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loads the API services and grpc.health.v1 into one package definition', () => {
    const definition = loadReflectionPackage(findProtoDir(__dirname));
    expect(Object.keys(definition)).toEqual(
      expect.arrayContaining([
        'multiagents.v1.OrchestratorService',
        'multiagents.v1.WorkerManagerService',
        'grpc.health.v1.Health',
        'multiagents.v1.RunRecord',
      ]),
    );
  });
});
