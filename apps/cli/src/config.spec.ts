import { DEFAULT_ADDRESS, loadCliConfig } from './config';

describe('CLI config', () => {
  it('reads MULTIAGENTS_ADDRESS, with a local default', () => {
    expect(loadCliConfig({}).address).toBe(DEFAULT_ADDRESS);
    expect(loadCliConfig({ MULTIAGENTS_ADDRESS: ' 10.0.0.5:7000 ' }).address).toBe('10.0.0.5:7000');
    expect(loadCliConfig({ MULTIAGENTS_ADDRESS: '' }).address).toBe(DEFAULT_ADDRESS);
  });
});
