/** A failure that ends a program with `code` after printing `message` (§8). */
export class ExitError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}
