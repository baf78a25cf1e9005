import { ValidationError } from '@multiagents/contracts';

/** Gathers problems from several checks so a bad configuration is reported whole. */
export class ValidationErrorList {
  private readonly problems: string[] = [];

  add(problem: string): void {
    this.problems.push(problem);
  }

  collect<T>(check: () => T): T | undefined {
    try {
      return check();
    } catch (err) {
      if (err instanceof ValidationError) this.problems.push(...err.problems);
      else throw err;
      return undefined;
    }
  }

  throwIfAny(what: string): void {
    if (this.problems.length > 0) throw new ValidationError(what, this.problems);
  }
}
