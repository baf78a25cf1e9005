import type { Delivery } from './event-bus';

/**
 * Keeps deliveries whose handling takes long owned by this consumer: every delivery held is
 * extended at least every `everyMs` until it is let go. One timer serves them all, armed while
 * any is held: a timer per delivery cost a consumer of many short messages (the event-monitor's
 * events, a worker-manager's commands) a timer made and cleared per message. A failed extend is
 * reported to `failed`, never left as an unhandled rejection (which ends the process); the
 * delivery stays held and is extended again at the next tick.
 *
 * @example
 * const extender = new DeliveryExtender(visibilityTimeoutMs / 3, (err) => log.warn({ err }));
 * extender.hold(delivery);
 * try { await slowWrite(); } finally { extender.release(delivery); }
 */
export class DeliveryExtender {
  private readonly held = new Set<Delivery>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly everyMs: number,
    private readonly failed: (err: unknown, delivery: Delivery) => void,
  ) {}

  /** Extends `delivery` every period from now on, until {@link release}. */
  hold(delivery: Delivery): void {
    this.held.add(delivery);
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), this.everyMs);
    // A consumer's own lifetime is kept by its subscription, not by this timer.
    this.timer.unref();
  }

  release(delivery: Delivery): void {
    this.held.delete(delivery);
  }

  /** Lets every delivery go and stops the timer. */
  clear(): void {
    this.held.clear();
    this.stop();
  }

  private tick(): void {
    if (this.held.size === 0) {
      this.stop();
      return;
    }
    for (const delivery of this.held) {
      try {
        delivery.extend().catch((err: unknown) => this.failed(err, delivery));
      } catch (err) {
        this.failed(err, delivery);
      }
    }
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
