import { ValidationError } from '@multiagents/contracts';
import {
  REASONING_FIELD,
  buildAxSignature,
  checkAnswer,
  parseSignature,
  pickInputs,
} from './agent-signature';

describe('parseSignature', () => {
  it('parses input and output fields with their types, arrays, optionality, classes and descriptions', () => {
    const parsed = parseSignature(
      '"Answer from the corpus" question:string "what the user asked", context?:string[] -> answer:string, sources:string[], confidence:number, verdict:class "supported, unsupported", grounded:boolean, details?:json',
    );
    expect(parsed.description).toBe('Answer from the corpus');
    expect(parsed.inputs).toEqual([
      {
        name: 'question',
        type: 'string',
        isArray: false,
        isOptional: false,
        description: 'what the user asked',
      },
      { name: 'context', type: 'string', isArray: true, isOptional: true },
    ]);
    expect(parsed.outputs).toEqual([
      { name: 'answer', type: 'string', isArray: false, isOptional: false },
      { name: 'sources', type: 'string', isArray: true, isOptional: false },
      { name: 'confidence', type: 'number', isArray: false, isOptional: false },
      {
        name: 'verdict',
        type: 'class',
        isArray: false,
        isOptional: false,
        options: ['supported', 'unsupported'],
      },
      { name: 'grounded', type: 'boolean', isArray: false, isOptional: false },
      { name: 'details', type: 'json', isArray: false, isOptional: true },
    ]);
  });

  it('treats untyped fields as strings', () => {
    expect(parseSignature('question -> answer').outputs).toEqual([
      { name: 'answer', type: 'string', isArray: false, isOptional: false },
    ]);
  });

  it.each([
    ['question:string -> ', 'No output fields'],
    ['no arrow here', 'Expected "->"'],
    ['question:string -> answer:string, answer:string', 'Duplicate output field'],
    ['text:string -> answer:string', 'too generic'],
  ])('refuses %j with Ax’s explanation', (signature, why) => {
    let thrown: unknown;
    try {
      parseSignature(signature);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    expect((thrown as ValidationError).problems.join()).toContain(why);
  });
});

describe('buildAxSignature', () => {
  it('puts the reasoning field first for chain-of-thought, and sets the description', () => {
    const sig = buildAxSignature('question:string -> answer:string', {
      description: 'Be brief',
      reasoningField: true,
    });
    expect(sig.getOutputFields().map((f) => f.name)).toEqual([REASONING_FIELD, 'answer']);
    expect(sig.getDescription()).toBe('Be brief');
  });

  it('leaves the signature alone otherwise', () => {
    const sig = buildAxSignature('question:string -> answer:string', { reasoningField: false });
    expect(sig.getOutputFields().map((f) => f.name)).toEqual(['answer']);
  });
});

describe('checkAnswer', () => {
  const { outputs } = parseSignature(
    'question:string -> answer:string, sources:string[], confidence:number, verdict:class "yes, no", note?:string',
  );

  it('accepts an answer that fits', () => {
    expect(
      checkAnswer({ answer: 'Paris', sources: ['a'], confidence: 0.9, verdict: 'yes' }, outputs),
    ).toEqual([]);
  });

  it('lists every missing field and wrong type', () => {
    expect(
      checkAnswer({ answer: '', sources: ['a', 3], confidence: 'high', verdict: 'maybe' }, outputs),
    ).toEqual([
      'output field "answer" is missing',
      'output field "sources[1]" must be a string, got a number',
      'output field "confidence" must be a number, got a string',
      'output field "verdict" must be one of yes, no, got "maybe"',
    ]);
    expect(checkAnswer({}, outputs)).toEqual([
      'output field "answer" is missing',
      'output field "sources" is missing',
      'output field "confidence" is missing',
      'output field "verdict" is missing',
    ]);
  });
});

describe('pickInputs', () => {
  const { inputs } = parseSignature('question:string, topK?:number, tags?:string[] -> answer:string');

  it('takes only the signature’s fields from the run context', () => {
    expect(pickInputs({ question: 'Why?', total: 5, tags: ['x'], other: { deep: true } }, inputs)).toEqual({
      values: { question: 'Why?', tags: ['x'] },
      problems: [],
    });
  });

  it('turns numbers and booleans into text for string fields', () => {
    expect(pickInputs({ question: 42, tags: [true, 'y'] }, inputs).values).toEqual({
      question: '42',
      tags: ['true', 'y'],
    });
  });

  it('lists missing and mistyped fields', () => {
    expect(pickInputs({ topK: 'three', tags: 'x' }, inputs).problems).toEqual([
      'input field "question" is missing',
      'input field "topK" must be a number, got a string',
      'input field "tags" must be an array, got a string',
    ]);
    expect(pickInputs('just a string', inputs).problems).toEqual([
      'the step input must be an object with question, topK, tags',
    ]);
  });

  it('never reads inherited properties', () => {
    const input = JSON.parse('{"__proto__": {"question": "polluted"}}') as unknown;
    expect(pickInputs(input, inputs).problems).toEqual(['input field "question" is missing']);
  });
});
