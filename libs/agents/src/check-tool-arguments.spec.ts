import { checkToolArguments } from './check-tool-arguments';
import type { ToolParametersSchema } from './agent-tool';

const schema: ToolParametersSchema = {
  type: 'object',
  properties: {
    query: { type: 'string', description: 'words' },
    limit: { type: 'integer', description: 'how many' },
    order: { type: 'string', description: 'sort', enum: ['asc', 'desc'] },
  },
  required: ['query'],
};

describe('checkToolArguments', () => {
  it('accepts arguments that fit, extra ones included', () => {
    expect(checkToolArguments({ query: 'x', limit: 3, order: 'asc', extra: true }, schema)).toEqual([]);
  });

  it('lists missing, mistyped and out-of-enum arguments', () => {
    expect(checkToolArguments({ limit: 2.5, order: 'up' }, schema)).toEqual([
      '"query" is required',
      '"limit" must be an integer',
      '"order" must be one of asc, desc',
    ]);
    expect(checkToolArguments('query=x', schema)).toEqual(['arguments must be an object']);
  });
});
