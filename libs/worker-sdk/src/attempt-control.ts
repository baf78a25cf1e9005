/**
 * Aborts one attempt: fires the signal its handler sees (`ctx.signal`) and tells the runner why,
 * without an event listener per attempt (Node's EventTarget costs microseconds per listener).
 * The AbortSignal itself is made only when someone asks for it: most handlers never read
 * `ctx.signal`, and an AbortSignal is an EventTarget, not a cheap object. The WorkerManager keeps
 * one per attempt in flight to cancel it or give up on it at shutdown.
 */
export class AttemptControl {
  private controller: AbortController | undefined;
  private listener: ((reason: unknown) => void) | undefined;
  private done = false;
  private signalled = false;
  private why: unknown;

  /** The attempt's signal, handed to its handler (made on first use, aborted if it already fired). */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.signalled) this.controller.abort(this.why);
    }
    return this.controller.signal;
  }

  /** The signal fired without ending the attempt ({@link interrupt}). */
  get interrupted(): boolean {
    return this.signalled && !this.done;
  }

  get aborted(): boolean {
    return this.done;
  }

  /** Why it was aborted (undefined while it was not). */
  get reason(): unknown {
    return this.why;
  }

  /**
   * Fires the signal the handler sees without ending the attempt, which ends when its handler
   * does and with what it returns or throws (a cooperative cancel: a handler that completes
   * anyway has done its work, and that must count). Once; a later {@link abort} still ends it.
   */
  interrupt(reason: unknown): void {
    if (this.signalled) return;
    this.signalled = true;
    this.why = reason;
    this.controller?.abort(reason);
  }

  /** Aborts the attempt (once; later calls change nothing). */
  abort(reason: unknown): void {
    if (this.done) return;
    this.done = true;
    this.signalled = true;
    this.why = reason;
    // The runner hears it first, so the attempt is classified by why it was aborted, not by
    // whatever the handler throws once its signal fires.
    this.listener?.(reason);
    this.controller?.abort(reason);
  }

  /** The runner's one listener (replacing any earlier one); undefined removes it. */
  onAbort(listener: ((reason: unknown) => void) | undefined): void {
    this.listener = listener;
  }
}
