import type { Delivery } from './event-bus';
import type { Logger } from './logger';

/**
 * Keeps deliveries whose handling takes long owned by this consumer: every delivery held is
 * extended three times per visibility timeout (one late or lost extension does not cost the
 * message) until it is let go. One timer serves them all, armed while any is held: a timer per
 * delivery cost a consumer of many short messages (the event-monitor's events, a
 * worker-manager's commands) a timer made and cleared per message. A failed extend is logged,
 * never left as an unhandled rejection (which ends the process); the delivery stays held and is
 * extended again at the next tick.
 *
 * @example
 * const extender = new DeliveryExtender(visibilityTimeoutMs, logger);
 * extender.hold(delivery);
 * try { await slowWrite(); } finally { extender.release(delivery); }
 */
export class DeliveryExtender {
  private readonly held = new Set<Delivery>();
  private timer: NodeJS.Timeout | undefined;
  private readonly everyMs: number;

  constructor(
    visibilityTimeoutMs: number,
    private readonly logger: Logger,
  ) {
    this.everyMs = Math.max(1, Math.floor(visibilityTimeoutMs / 3));
  }

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

  private failed(err: unknown, delivery: Delivery): void {
    this.logger.warn({ err, messageId: delivery.id }, 'extending a delivery failed');
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
