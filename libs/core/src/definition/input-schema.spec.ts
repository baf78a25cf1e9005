import { compileInputSchema } from './input-schema';

describe('compileInputSchema', () => {
  const order = {
    type: 'object',
    required: ['orderId'],
    properties: { orderId: { type: 'string', minLength: 1 }, total: { $ref: '#/definitions/amount' } },
    definitions: { amount: { type: 'number', minimum: 0 } },
  };

  it('checks inputs against each schema alone, local $refs included, every problem listed', () => {
    const check = compileInputSchema(order);
    const other = compileInputSchema({
      type: 'object',
      required: ['name'],
      properties: { name: { type: 'string' } },
    });
    expect(check({ orderId: 'o-1', total: 3 })).toEqual([]);
    expect(check({ orderId: '', total: -1 })).toEqual([
      'input.orderId must NOT have fewer than 1 characters',
      'input.total must be >= 0',
    ]);
    expect(other({ orderId: 'o-1' })).toEqual(["input must have required property 'name'"]);
    // Compiled again (a second registration): the same answers.
    expect(compileInputSchema(structuredClone(order))({ orderId: '', total: 3 })).toHaveLength(1);
  });

  it('keeps schemas with the same $id apart, and resolves no $ref to another schema', () => {
    const id = 'https://example.com/order.json';
    const a = compileInputSchema({ $id: id, type: 'object', required: ['a'], properties: { a: {} } });
    const b = compileInputSchema({ $id: id, type: 'object', required: ['b'], properties: { b: {} } });
    expect(a({ b: 1 })).toEqual(["input must have required property 'a'"]);
    expect(b({ a: 1 })).toEqual(["input must have required property 'b'"]);
    const nested = {
      type: 'object',
      properties: { x: { $id: 'https://example.com/x.json', type: 'string' } },
    };
    expect(compileInputSchema(nested)({ x: 1 })).toEqual(['input.x must be string']);
    expect(() => compileInputSchema({ $ref: 'https://example.com/x.json' })).toThrow(
      /not a valid JSON Schema/,
    );
    expect(() => compileInputSchema({ $ref: id })).toThrow(/not a valid JSON Schema.*order\.json/);
  });

  it('refuses an invalid schema and still compiles the next one', () => {
    expect(() => compileInputSchema({ type: 'objekt' })).toThrow(/not a valid JSON Schema/);
    expect(() => compileInputSchema({ tpye: 'object' })).toThrow(/unknown keyword: "tpye"/);
    expect(compileInputSchema({ type: 'object' })({})).toEqual([]);
  });
});
