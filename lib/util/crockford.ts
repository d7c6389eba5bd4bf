/**
 * Crockford base32 (https://www.crockford.com/base32.html) and random identifiers: device serials
 * that people read aloud and type, and base64url tokens for machines.
 *
 * @module
 */

/** The Crockford base32 alphabet: digits and upper-case letters without I, L, O and U. */
export const CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** Number of characters in a serial, without dashes (160 bits / 5 bits per character). */
export const SERIAL_CHARS = 32;

/**
 * Encodes bytes as Crockford base32 (upper case, no padding, no check symbol). The bits are read
 * most-significant first; a final partial group is padded with zero bits.
 */
export function crockfordEncode(bytes: Uint8Array): string {
  let out = "";
  let acc = 0;
  let nbits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff;
    nbits += 8;
    while (nbits >= 5) {
      nbits -= 5;
      out += CROCKFORD_ALPHABET[(acc >> nbits) & 31];
    }
  }
  if (nbits > 0) out += CROCKFORD_ALPHABET[(acc << (5 - nbits)) & 31];
  return out;
}

function dashed(chars: string): string {
  return chars.match(/.{1,4}/g)!.join("-");
}

/** Returns a new random serial: 160 random bits as 32 Crockford characters, `XXXX-XXXX-...`. */
export function newSerial(): string {
  const bytes = new Uint8Array(20);
  crypto.getRandomValues(bytes);
  return dashed(crockfordEncode(bytes));
}

/**
 * Canonicalizes a typed serial: drops dashes and whitespace (which also trims), upper-cases,
 * reads I and L as 1 and O as 0, and returns the dashed form. Returns null if the result is not
 * 32 Crockford characters (any non-ASCII character also gives null).
 */
export function normalizeSerial(input: string): string | null {
  const compact = input.replace(/[\s-]+/g, "");
  // Reject non-ASCII before upper-casing: "ß" would become "SS", "ı" would become "I".
  if (!/^[\x21-\x7e]*$/.test(compact)) return null;
  const s = compact.toUpperCase().replace(/[IL]/g, "1").replace(/O/g, "0");
  if (s.length !== SERIAL_CHARS || !/^[0-9A-HJKMNP-TV-Z]+$/.test(s)) return null;
  return dashed(s);
}

/** Returns `bytes` random bytes (default 32) as unpadded base64url. */
export function randomToken(bytes = 32): string {
  if (!Number.isSafeInteger(bytes) || bytes < 1 || bytes > 65536) {
    throw new RangeError(`Cannot make token: ${bytes} bytes is not in 1..65536`);
  }
  const raw = new Uint8Array(bytes);
  crypto.getRandomValues(raw);
  let bin = "";
  for (const b of raw) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
