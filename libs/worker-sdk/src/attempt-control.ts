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
  private why: unknown;

  /** The attempt's signal, handed to its handler (made on first use, aborted if the attempt was). */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.done) this.controller.abort(this.why);
    }
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.done;
  }

  /** Why it was aborted (undefined while it was not). */
  get reason(): unknown {
    return this.why;
  }

  /** Aborts the attempt (once; later calls change nothing). */
  abort(reason: unknown): void {
    if (this.done) return;
    this.done = true;
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
