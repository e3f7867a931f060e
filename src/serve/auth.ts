/**
 * Access and rate limits of `ddpm serve`: bearer tokens from a file, compared in constant time, and token buckets
 * per client (requests a minute, images a minute).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { UserError } from '../errors.ts';

/** Shortest token accepted: 16 characters (96 bits of base64) make guessing pointless within any rate limit. */
export const MIN_TOKEN_LENGTH = 16;

/** The tokens a server accepts. */
export interface TokenSet {
  readonly size: number;
  /**
   * The id of the token an Authorization header carries ("Bearer <token>"), or null. Every stored token is compared
   * (in constant time, on SHA-256 digests), so the time taken says nothing about which one nearly matched.
   */
  check(authorization: string | undefined): string | null;
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * The tokens of `text`: one a line; blank lines and lines starting with '#' are skipped, and so is anything after
 * the token on its line once whitespace and '#' start a comment. A token's id, for logs, is the first 8 hex digits
 * of its SHA-256: it names the token without revealing it.
 */
export function parseTokens(text: string, where = 'tokens'): TokenSet {
  const digests: Buffer[] = [];
  const ids: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/\s+#.*$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    if (/\s/.test(line)) throw new UserError(`${where}:${i + 1}: one token a line, without spaces`);
    if (line.length < MIN_TOKEN_LENGTH) throw new UserError(`${where}:${i + 1}: a token must have at least ${MIN_TOKEN_LENGTH} characters (e.g. openssl rand -hex 24)`);
    if (!/^[\x21-\x7e]+$/.test(line)) throw new UserError(`${where}:${i + 1}: a token must be printable ASCII`);
    const d = sha256(line);
    if (digests.some((x) => x.equals(d))) throw new UserError(`${where}:${i + 1}: the same token twice`);
    digests.push(d);
    ids.push(d.toString('hex').slice(0, 8));
  });
  if (digests.length === 0) throw new UserError(`${where}: no token (one a line; '#' starts a comment)`);
  return {
    size: digests.length,
    check(authorization) {
      const m = /^Bearer +([\x21-\x7e]+) *$/i.exec(authorization ?? '');
      const given = sha256(m ? m[1]! : '');
      let found = -1;
      for (let i = 0; i < digests.length; i++) if (timingSafeEqual(given, digests[i]!) && m) found = i;
      return found >= 0 ? ids[found]! : null;
    },
  };
}

/** {@link parseTokens} of a file; a missing or unreadable file is one UserError line. */
export async function readTokens(file: string): Promise<TokenSet> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`--tokens ${file}: ${(e as Error).message}`);
  }
  return parseTokens(text, file);
}

/**
 * Token buckets, one per key: `perMinute` units, refilled continuously; a take that does not fit is refused with
 * the seconds until it would. 0 turns the limit off.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { level: number; at: number }>();

  constructor(readonly perMinute: number) {}

  /** 0 when `amount` was taken from `key`'s bucket, else the seconds to wait (Infinity: more than a minute's worth). */
  take(key: string, amount: number, now = performance.now()): number {
    if (this.perMinute <= 0) return 0;
    if (amount > this.perMinute) return Infinity;
    const rate = this.perMinute / 60_000; // units a millisecond
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= 10_000) this.prune(now);
      b = { level: this.perMinute, at: now };
      this.buckets.set(key, b);
    }
    b.level = Math.min(this.perMinute, b.level + (now - b.at) * rate);
    b.at = now;
    if (b.level >= amount) {
      b.level -= amount;
      return 0;
    }
    return (amount - b.level) / rate / 1000;
  }

  /** Forget the buckets that are full again (their clients idle for a minute): they hold nothing. */
  private prune(now: number): void {
    for (const [k, b] of this.buckets) if (b.level + (now - b.at) * (this.perMinute / 60_000) >= this.perMinute) this.buckets.delete(k);
  }
}
