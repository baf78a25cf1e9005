import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { readRepoFile } from './compose';

/** The Dockerfile of every service image. */
export const DOCKERFILE = 'infra/Dockerfile';
/** Its text. */
export const dockerfileText = readRepoFile(DOCKERFILE);
/** Its syntax tree (dockerfile-ast, the parser of the Dockerfile language server). */
export const dockerfile = DockerfileParser.parse(dockerfileText);

interface Stage {
  readonly name: string;
  readonly from: string;
  readonly instructions: readonly Instruction[];
}

/** The build stages, each with the instructions up to the next FROM. */
export function stages(): Map<string, Stage> {
  const froms = dockerfile.getFROMs();
  const all = dockerfile.getInstructions();
  const result = new Map<string, Stage>();
  froms.forEach((from, index) => {
    const start = from.getRange().start.line;
    const end = froms[index + 1]?.getRange().start.line ?? Number.POSITIVE_INFINITY;
    const name = from.getBuildStage() ?? String(index);
    result.set(name, {
      name,
      from: from.getImageName() ?? '',
      instructions: all.filter((i) => i.getRange().start.line > start && i.getRange().start.line < end),
    });
  });
  return result;
}

/** A stage's instructions with those of the stages it is built FROM, oldest first. */
export function chain(name: string): Instruction[] {
  const all = stages();
  const stage = all.get(name);
  if (stage === undefined) return [];
  return [...(all.has(stage.from) ? chain(stage.from) : []), ...stage.instructions];
}

/** The last instruction of a kind in a list. */
export function last(instructions: readonly Instruction[], keyword: string): Instruction | undefined {
  return instructions.filter((i) => i.getKeyword() === keyword).pop();
}

/** The environment an image of `target` starts with: every ENV of its stage chain. */
export function imageEnv(target: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const instruction of chain(target)) {
    if (instruction.getKeyword() !== 'ENV') continue;
    for (const part of (instruction.getArgumentsContent() ?? '').split(/\s+/)) {
      const [name, ...value] = part.split('=');
      if (name && value.length > 0) env[name] = value.join('=');
    }
  }
  return env;
}
