/** Errors of the composefs module (dumpfile parsing, EROFS writing). */
import { OstreeOciError } from '../errors.js';

/** Fields of a composefs dumpfile line, as named in composefs-dump(5). */
export type DumpfileField =
  | 'PATH'
  | 'SIZE'
  | 'MODE'
  | 'NLINK'
  | 'UID'
  | 'GID'
  | 'RDEV'
  | 'MTIME'
  | 'PAYLOAD'
  | 'CONTENT'
  | 'DIGEST'
  | 'XATTRS'
  | 'LINE'
  | 'FILE';

/**
 * A dumpfile that mkcomposefs 1.0.8 would reject. `reason` is mkcomposefs's own message (so the
 * verdicts can be compared), `line` the 1-based line number (0 for whole-file errors such as
 * "No files in dump file"), `field` the field that failed.
 */
export class DumpfileSyntaxError extends OstreeOciError {
  constructor(
    readonly reason: string,
    readonly line: number,
    readonly field: DumpfileField,
    readonly source?: string,
  ) {
    super(
      `${source ? `${source}: ` : ''}dumpfile ${line > 0 ? `line ${line}` : 'input'}${
        field === 'LINE' || field === 'FILE' ? '' : `, field ${field}`
      }: ${reason}`,
      { reason, line, field, source },
    );
  }
}

/** Error codes mirroring the errno values libcomposefs' writer fails with. */
export type ComposefsWriteCode = 'EINVAL' | 'EFBIG' | 'ELOOP' | 'ERANGE';

const CODE_TEXT: Record<ComposefsWriteCode, string> = {
  EINVAL: 'Invalid argument',
  EFBIG: 'File too large',
  ELOOP: 'Too many levels of symbolic links',
  ERANGE: 'Numerical result out of range',
};

/** The tree cannot be written as an EROFS image (mkcomposefs: "cannot write file: …"). */
export class ComposefsWriteError extends OstreeOciError {
  constructor(
    readonly code: ComposefsWriteCode,
    readonly path: string,
    readonly reason: string,
  ) {
    super(`cannot write composefs image: ${path}: ${reason} (${code}: ${CODE_TEXT[code]})`, {
      code,
      path,
      reason,
    });
  }
}

/** Bad writer options (format versions). */
export class ComposefsOptionsError extends OstreeOciError {
  override readonly exitCode = 2;
}
