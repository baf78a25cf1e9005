import { definitionStoreConformance } from '@multiagents/testing';
import { NatsDefinitionStore } from './nats-definition-store';
import { freshPrefix, startNatsTestServer, type NatsTestServer } from './test-nats';

let nats: NatsTestServer;
beforeAll(async () => {
  nats = await startNatsTestServer();
});
afterAll(async () => {
  await nats.stop();
});

const open: NatsDefinitionStore[] = [];
afterEach(async () => {
  for (const store of open.splice(0)) await store.close();
});

definitionStoreConformance('NatsDefinitionStore', async () => {
  const prefix = freshPrefix();
  const store = new NatsDefinitionStore({ servers: nats.url, prefix });
  open.push(store);
  await store.start();
  return { store, cleanup: () => nats.destroyPrefix(prefix) };
});
