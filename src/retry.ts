/** This attempt at a consistent copy cannot be proven consistent; another may be. */
export class RetryAttempt extends Error {
  /** `reason` says why, for people. */
  constructor(readonly reason: string) {
    super(reason);
  }
}
