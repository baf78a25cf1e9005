/** Attribute names of the spans this library makes (OpenTelemetry messaging conventions + ours). */
export const Attr = {
  RunId: 'multiagents.run.id',
  WorkflowId: 'multiagents.workflow.id',
  WorkflowVersion: 'multiagents.workflow.version',
  StepName: 'multiagents.step.name',
  Attempt: 'multiagents.attempt',
  Outcome: 'multiagents.outcome',
  Worker: 'multiagents.worker',
  Compensation: 'multiagents.compensation',
  Redispatch: 'multiagents.redispatch',
  Retryable: 'multiagents.retryable',
  DeliveryCount: 'multiagents.delivery_count',
  TimeoutMs: 'multiagents.timeout_ms',
  SignalName: 'multiagents.signal.name',
  ErrorType: 'error.type',
  MessagingSystem: 'messaging.system',
  MessagingOperationType: 'messaging.operation.type',
  MessagingDestinationName: 'messaging.destination.name',
  MessagingMessageId: 'messaging.message.id',
  MessagingConsumerGroupName: 'messaging.consumer.group.name',
  MessagingClientId: 'messaging.client.id',
} as const;

/** Span names (the part before the step, worker or workflow id). */
export const SpanName = {
  WorkflowStart: 'workflow.start',
  WorkflowRun: 'workflow.run',
  Step: 'step',
  Compensate: 'compensate',
  Process: 'process',
  Wait: 'wait',
  Sleep: 'sleep',
} as const;
