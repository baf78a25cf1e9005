/**
 * The same fault tests as Redis, over a private nats-server with JetStream whose store directory
 * survives kill -9 and restart (its defaults: asynchronous writes).
 */
import { natsUnderTest } from './backends-under-test';
import { describeFaults } from './describe-faults';

describeFaults(natsUnderTest());
