/**
 * UserError: an error the user's input caused (a missing file, a bad option, a model that does not fit), meant to
 * be shown as one line. The library's loaders throw it; the CLI prints it without a stack and exits with its
 * exit code (2: bad input). Pure module (no node:*).
 */
export class UserError extends Error {
  override name = 'UserError';
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}
