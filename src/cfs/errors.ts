/** Errors of the composefs repository code (`src/cfs/`). Each names the repository path/object. */
import { OstreeOciError } from '../errors.js';

/** A composefs repository that is missing, not a repository, or of an unsupported kind. */
export class CfsRepoError extends OstreeOciError {}

/** A stored object whose fs-verity digest is not its name (or that cannot be read). */
export class CfsCorruptObjectError extends OstreeOciError {
  constructor(
    readonly path: string,
    readonly expected: string,
    readonly actual: string | null,
    detail?: string,
  ) {
    super(
      actual === null
        ? `corrupted object ${path}: ${detail ?? 'unreadable'}`
        : `corrupted object ${path}: fs-verity digest is ${actual}, its name says ${expected}${detail ? ` (${detail})` : ''}`,
      { path, expected, actual, ...(detail ? { detail } : {}) },
    );
  }
}

/** Content that did not hash to the digest it was expected to have while being stored. */
export class CfsDigestMismatchError extends OstreeOciError {}

/** A splitstream file that is truncated or malformed (names the file and the field). */
export class SplitstreamFormatError extends OstreeOciError {}

/** The source of a migration (repo, sysroot, deployment, objects) is missing or unusable. */
export class MigrateSourceError extends OstreeOciError {}

/** The source commit failed verification (signature or composefs digest) before migrating. */
export class MigrateVerifyError extends OstreeOciError {}

/** Another process holds the repository (e.g. gc while a migration writes). */
export class CfsBusyError extends OstreeOciError {}
