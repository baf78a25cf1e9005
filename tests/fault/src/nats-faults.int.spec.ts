/**
 * Issue 5 item 3: the same fault tests as Redis, over a private nats-server with JetStream whose
 * store directory survives kill -9 and restart.
 */
import { natsUnderTest } from './backends-under-test';
import { describeFaults } from './describe-faults';

describeFaults(natsUnderTest);
