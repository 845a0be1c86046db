/** A failure that ends a program with `code` after printing `message` (§8). */
export class ExitError extends Error {
  constructor(
    message: string,
    readonly code: number,
    /** `cause`: the failure behind it, for callers that act on its errno. */
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
