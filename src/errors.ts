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

/**
 * The user stopped a command with a signal after it saved what it had (a training run's checkpoint): the CLI
 * prints nothing more and exits 128 + the signal number, as a shell reports it (SIGINT 130, SIGTERM 143).
 */
export class Interrupted extends Error {
  override name = 'Interrupted';
  readonly exitCode: number;
  constructor(readonly signal: 'SIGINT' | 'SIGTERM') {
    super(`interrupted by ${signal}`);
    this.exitCode = signal === 'SIGINT' ? 130 : 143;
  }
}
