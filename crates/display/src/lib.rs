//! Making untrusted text safe to show: what is displayed must be what was signed, so control,
//! bidirectional-override and invisible characters are written out as `\u{...}` escapes
//! instead of being interpreted by the terminal or the UI, and look-alike text is flagged.
//!
//! A leaf crate (its only dependency is `unicode-security`): the CLI, the desktop UI's DTOs and
//! the desktop notifications apply the same rules without depending on each other.
#![forbid(unsafe_code)]

/// True for characters that can hide, reorder or fake text when rendered.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'              // soft hyphen
            | '\u{034F}'            // combining grapheme joiner
            | '\u{061C}'            // Arabic letter mark
            | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}' // zero-width and LRM/RLM
            | '\u{2028}'..='\u{202E}' // separators, embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, isolates
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}' // tag characters
            | '\u{E0100}'..='\u{E01EF}')
}

/// `s` with every hidden character shown as `\u{XXXX}`. Line feeds stay line breaks when
/// `keep_newlines` is set (multi-line commands must stay readable); everything else that a
/// terminal would interpret is escaped.
pub fn visible_text(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if keep_newlines && c == '\n' {
            out.push('\n');
        } else if is_hidden(c) {
            out.push_str(&format!("\\u{{{:X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A single-line field made visible (newlines escaped too).
pub fn visible(s: &str) -> String {
    visible_text(s, false)
}

/// Warnings about text that may mislead a reader even when every character is visible, using
/// the Unicode security mechanisms of UTS #39 (`unicode-security`):
///
/// - hidden characters (control, bidirectional, invisible), which are shown escaped;
/// - a word that mixes scripts (`pаypal` with a Cyrillic `а`): each word must resolve to a
///   single script, as in UTS #39 mixed-script detection;
/// - a word written with non-ASCII characters whose confusable skeleton is plain ASCII
///   (`рау` in Cyrillic reads as `pay`): it imitates ASCII text.
///
/// Each warning names the word, made visible. Ordinary text in one script (`héllo`, `Grüße`,
/// `日本語`) gives none.
pub fn warnings(s: &str) -> Vec<String> {
    use unicode_security::{skeleton, MixedScript};
    let mut w = Vec::new();
    if s.chars().any(|c| c != '\n' && is_hidden(c)) {
        w.push(
            "contains control, bidirectional or invisible characters (shown as \\u{...})"
                .to_owned(),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for word in s.split(|c: char| c.is_whitespace() || is_hidden(c)) {
        if word.is_ascii() || !seen.insert(word) {
            continue;
        }
        if !word.is_single_script() {
            w.push(format!(
                "mixes scripts in \"{}\" (possible look-alike characters)",
                visible(word)
            ));
            continue;
        }
        let skel: String = skeleton(word).collect();
        if skel.is_ascii() && skel.chars().any(|c| c.is_ascii_alphanumeric()) {
            w.push(format!(
                "\"{}\" is written in non-Latin characters that look like \"{skel}\"",
                visible(word)
            ));
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            ("plain text", "plain text"),
            ("rm -rf /\u{202E}txt.exe", "rm -rf /\\u{202E}txt.exe"),
            ("a\u{200B}b", "a\\u{200B}b"),
            ("bell\u{7}", "bell\\u{7}"),
            ("esc\u{1b}[2J", "esc\\u{1B}[2J"),
            ("line1\nline2", "line1\\u{A}line2"),
            ("cr\rover", "cr\\u{D}over"),
            ("tab\there", "tab\\u{9}here"),
            ("iso\u{2066}x\u{2069}", "iso\\u{2066}x\\u{2069}"),
            ("bom\u{FEFF}", "bom\\u{FEFF}"),
            ("tag\u{E0041}", "tag\\u{E0041}"),
            ("c1\u{85}", "c1\\u{85}"),
            ("héllo wörld", "héllo wörld"),
        ];
        for (input, want) in cases {
            assert_eq!(&visible(input), want, "input {input:?}");
        }
    }

    #[test]
    fn newlines_kept_in_detail() {
        assert_eq!(visible_text("a\nb\u{202E}", true), "a\nb\\u{202E}");
    }

    /// (text, expected warnings as substrings, in order). Empty: no warning.
    #[test]
    fn warnings_table() {
        let cases: &[(&str, &[&str])] = &[
            ("plain ASCII text; DROP TABLE users;", &[]),
            ("héllo wörld, Grüße aus Köln", &[]),
            ("日本語のテキスト", &[]),
            ("Привет мир", &[]),
            ("αβγ δέλτα", &[]),
            ("a\u{202E}b", &["control, bidirectional or invisible"]),
            ("pay\u{200B}pal", &["control, bidirectional or invisible"]),
            // Cyrillic а (U+0430) inside a Latin word.
            ("login at pаypal.com", &["mixes scripts in \"pаypal.com\""]),
            // Greek ο (U+03BF) inside a Latin word.
            ("kubectl exec gοogle", &["mixes scripts in \"gοogle\""]),
            // All Cyrillic, imitating ASCII: р, а, у.
            (
                "approve рау",
                &["\"рау\" is written in non-Latin characters that look like \"pay\""],
            ),
            // Fullwidth Latin imitates ASCII too.
            ("ｄｅｐｌｏｙ prod", &["look like \"deploy\""]),
            // Both kinds at once; a repeated word is reported once.
            (
                "x\u{2066} pаypal pаypal",
                &[
                    "control, bidirectional or invisible",
                    "mixes scripts in \"pаypal\"",
                ],
            ),
        ];
        for (input, want) in cases {
            let got = warnings(input);
            assert_eq!(got.len(), want.len(), "{input:?}: {got:?}");
            for (g, w) in got.iter().zip(want.iter()) {
                assert!(g.contains(w), "{input:?}: {g:?} lacks {w:?}");
            }
        }
    }
}
