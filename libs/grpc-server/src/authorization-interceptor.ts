/**
 * The {@link Authorizer} as a grpc-js server interceptor: every call but health is authenticated
 * from its metadata (or client certificate) and checked against its method's role before the
 * handler sees anything; workflow-limited callers are also checked against the request (and the
 * run it names). Refusals are logged with the caller's subject, never with its token.
 */
import {
  ServerInterceptingCall,
  type Metadata,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import { MultiAgentsError, RunNotFoundError } from '@multiagents/contracts';
import type { Logger } from '@multiagents/core';
import type * as pb from '@multiagents/proto';
import { policyOf, type Authorizer, type Principal } from './authorizer';
import { MalformedRequest } from './call-handlers';
import { toGrpcStatus } from './grpc-error';
import { isValidId } from './request-ids';

/** Finds the workflow of a run, for callers limited to some workflows; undefined when unknown. */
export type RunWorkflowLookup = (txId: string) => Promise<string | undefined>;

/** Builds the interceptor. */
export function authorizationInterceptor(
  authorizer: Authorizer,
  logger: Logger,
  lookupRunWorkflow: RunWorkflowLookup | undefined,
): ServerInterceptor {
  return (descriptor, call) => {
    const path = descriptor.path;
    const policy = policyOf(path);
    if (policy.role === 'public') return new ServerInterceptingCall(call);

    let refused = false;
    let caller: Promise<Principal> | undefined;
    const refuse = (err: unknown): void => {
      if (refused) return;
      refused = true;
      logRefusal(logger, path, call, err);
      call.sendStatus(toGrpcStatus(err).status);
    };
    const authenticate = (metadata: Metadata): Promise<Principal> =>
      authorizer.authenticate({
        metadata,
        ...(call.getAuthContext().sslPeerCertificate === undefined
          ? {}
          : { peerCertificate: call.getAuthContext().sslPeerCertificate }),
      });

    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            caller = authenticate(metadata).then((principal) => {
              // The role alone, now: a caller without it never reaches the request handling.
              authorizer.authorizeRole(principal, path);
              // The handler gets these metadata: streams end when the token does.
              if (principal.expiresAt !== undefined) expiries.set(metadata, principal.expiresAt);
              return principal;
            });
            // Unhandled here on purpose: refused once below, and once only.
            caller.then(() => {
              if (!refused) nextMetadata(metadata);
            }, refuse);
          },
          onReceiveMessage: (message: unknown, nextMessage) => {
            const pending = caller;
            if (pending === undefined || refused) return;
            pending
              .then(async (principal) => {
                if (principal.workflows !== undefined && !(message instanceof MalformedRequest)) {
                  authorizer.authorize(
                    principal,
                    path,
                    await workflowOf(policy.scope, message, lookupRunWorkflow),
                  );
                }
                if (!refused) nextMessage(message);
              })
              // The role check above already refused this caller: nothing more to say.
              .catch((err: unknown) => (refused ? undefined : refuse(err)));
          },
        });
      },
      sendMessage: (message: unknown, next) => {
        // ListWorkflowDefinitions for a workflow-limited caller: only its own definitions.
        if (policy.scope.kind !== 'filter-definitions' || caller === undefined) {
          next(message);
          return;
        }
        caller.then(
          (principal) => next(filterDefinitions(message, principal)),
          () => undefined,
        );
      },
    });
  };
}

async function workflowOf(
  scope: ReturnType<typeof policyOf>['scope'],
  request: unknown,
  lookupRunWorkflow: RunWorkflowLookup | undefined,
): Promise<string | undefined> {
  if (scope.kind === 'workflow') return nonEmpty(scope.workflowIdOf(request));
  if (scope.kind === 'run') {
    const txId = nonEmpty(scope.txIdOf(request));
    // An id no handler accepts (too long, reserved) is refused by the handler, not looked up here.
    if (txId === undefined || lookupRunWorkflow === undefined || !isValidId(txId)) return undefined;
    // An unknown run is answered here: let through, the handler would find the run if it were
    // created meanwhile (another caller's start), and hand a run of any workflow to this caller.
    const workflowId = await lookupRunWorkflow(txId);
    if (workflowId === undefined) throw new RunNotFoundError(txId);
    return workflowId;
  }
  return undefined;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function filterDefinitions(message: unknown, principal: Principal): unknown {
  const allowed = principal.workflows;
  if (allowed === undefined) return message;
  const response = message as pb.ListWorkflowDefinitionsResponse;
  return { ...response, definitions: response.definitions.filter((d) => allowed.has(d.id)) };
}

function logRefusal(logger: Logger, path: string, call: ServerInterceptingCallInterface, err: unknown): void {
  const mapped = toGrpcStatus(err);
  if (mapped.unexpected) {
    logger.error({ method: path, peer: call.getPeer(), err }, 'authorization failed unexpectedly');
    return;
  }
  const details = err instanceof MultiAgentsError ? (err.details ?? {}) : {};
  logger.warn(
    {
      method: path,
      peer: call.getPeer(),
      code: err instanceof MultiAgentsError ? err.code : undefined,
      subject: details['subject'] ?? details['claimedSubject'] ?? 'anonymous',
      reason: err instanceof Error ? err.message : String(err),
    },
    'call refused',
  );
}

/** When the token of the call whose metadata these are stops being accepted (see {@link tokenExpiry}). */
const expiries = new WeakMap<Metadata, number>();

/**
 * When the caller's token (a JWT) stops being accepted, in ms since the epoch, for a call the
 * authorization interceptor let through; undefined without one (no authentication, mTLS). A
 * stream that outlives it is ended: the caller authenticates again and opens another.
 */
export function tokenExpiry(metadata: Metadata): number | undefined {
  return expiries.get(metadata);
}
