/**
 * Typed errors. Library code never prints or exits: it throws one of these, naming the
 * object/path/field that failed, and the CLI renders it (one line, details under --verbose).
 */
export class OstreeOciError extends Error {
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = 1;
  constructor(message: string, readonly details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad input given by the user (arguments, files, image references). */
export class UsageError extends OstreeOciError {
  override readonly exitCode = 2;
}

/** A GVariant that is truncated, non-normal or of the wrong shape. */
export class GVariantError extends OstreeOciError {}

/** An object whose bytes do not hash to the name it was given. */
export class ObjectChecksumError extends OstreeOciError {
  constructor(
    readonly objectType: string,
    readonly expected: string,
    readonly actual: string,
    where?: string,
  ) {
    super(
      `${objectType} object checksum mismatch${where ? ` at ${where}` : ''}: expected ${expected}, got ${actual}`,
      { objectType, expected, actual, where },
    );
  }
}
