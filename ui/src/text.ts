/**
 * The shell sends every request field as a `Text` with its `.visible` form already made safe.
 * A few plain strings (approver identities, gateway names, paths) arrive without one; this
 * applies the engine's rule (`display::visible`) to them before they are shown.
 */

/** [first, last] code point ranges the engine treats as hidden, besides control characters. */
const HIDDEN_RANGES: readonly (readonly [number, number])[] = [
  [0x00ad, 0x00ad], // soft hyphen
  [0x034f, 0x034f], // combining grapheme joiner
  [0x061c, 0x061c], // Arabic letter mark
  [0x115f, 0x1160], // Hangul fillers
  [0x3164, 0x3164],
  [0xffa0, 0xffa0],
  [0x17b4, 0x17b5],
  [0x180b, 0x180f],
  [0x200b, 0x200f], // zero-width and LRM/RLM
  [0x2028, 0x202e], // separators, embeddings and overrides
  [0x2060, 0x206f], // word joiner, invisible operators, isolates
  [0xfe00, 0xfe0f], // variation selectors
  [0xfeff, 0xfeff],
  [0xfff9, 0xfffb],
  [0xe0000, 0xe007f], // tag characters
  [0xe0100, 0xe01ef],
];

export function isHidden(codePoint: number): boolean {
  const control = codePoint < 0x20 || (codePoint >= 0x7f && codePoint <= 0x9f);
  return control || HIDDEN_RANGES.some(([first, last]) => codePoint >= first && codePoint <= last);
}

/** `s` with control, bidirectional and invisible characters written as `\u{XXXX}`. */
export function visible(s: string): string {
  let out = "";
  for (const c of s) {
    const cp = c.codePointAt(0) ?? 0;
    out += isHidden(cp) ? `\\u{${cp.toString(16).toUpperCase()}}` : c;
  }
  return out;
}
