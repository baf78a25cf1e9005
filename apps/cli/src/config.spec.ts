import { DEFAULT_ADDRESS, DEFAULT_MONITOR_ADDRESS, loadCliConfig } from './config';

describe('CLI config', () => {
  it('reads MULTIAGENTS_ADDRESS, with a local default', () => {
    expect(loadCliConfig({}).address).toBe(DEFAULT_ADDRESS);
    expect(loadCliConfig({ MULTIAGENTS_ADDRESS: ' 10.0.0.5:7000 ' })).toMatchObject({
      address: '10.0.0.5:7000',
      addressFromEnvironment: true,
    });
    expect(loadCliConfig({ MULTIAGENTS_ADDRESS: '' }).address).toBe(DEFAULT_ADDRESS);
  });

  it('reads MULTIAGENTS_MONITOR_ADDRESS, with a local default', () => {
    expect(loadCliConfig({}).monitorAddress).toBe(DEFAULT_MONITOR_ADDRESS);
    expect(loadCliConfig({ MULTIAGENTS_MONITOR_ADDRESS: '10.0.0.6:7001' })).toMatchObject({
      monitorAddress: '10.0.0.6:7001',
      monitorAddressFromEnvironment: true,
    });
  });

  it('reads the token and TLS settings', () => {
    expect(loadCliConfig({})).toEqual({
      address: DEFAULT_ADDRESS,
      monitorAddress: DEFAULT_MONITOR_ADDRESS,
      tls: false,
    });
    expect(
      loadCliConfig({
        MULTIAGENTS_TOKEN: 'a.b.c',
        MULTIAGENTS_TLS: 'true',
        MULTIAGENTS_TLS_CA: '/ca.pem',
        MULTIAGENTS_TLS_CLIENT_CERT: '/c.pem',
        MULTIAGENTS_TLS_CLIENT_KEY: '/k.pem',
        MULTIAGENTS_TLS_SERVER_NAME: 'orchestrator.internal',
      }),
    ).toEqual({
      address: DEFAULT_ADDRESS,
      monitorAddress: DEFAULT_MONITOR_ADDRESS,
      token: 'a.b.c',
      tls: true,
      tlsCaFile: '/ca.pem',
      tlsCertFile: '/c.pem',
      tlsKeyFile: '/k.pem',
      tlsServerName: 'orchestrator.internal',
    });
  });
});
