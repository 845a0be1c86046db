// Policy problems are reported as "file:line: what is wrong" (line 0: the file as a whole), and
// all of them are collected so a lint can show every one; any single one makes the policy deny.

export interface PolicyError {
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

export function formatPolicyError(error: PolicyError): string {
  return `${error.file}:${error.line}: ${error.message}`;
}

/**
 * Where a rule or directive came from; `note` explains rules no line spells out (compat's implicit
 * denies).
 */
export interface Origin {
  readonly file: string;
  readonly line: number;
  readonly note?: string;
}

export function formatOrigin(origin: Origin): string {
  return origin.note === undefined
    ? `${origin.file}:${origin.line}`
    : `${origin.file}:${origin.line} (${origin.note})`;
}
