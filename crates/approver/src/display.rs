//! Making untrusted text safe to show: what is displayed must be what was signed, so control,
//! bidirectional-override and invisible characters are written out as `\u{...}` escapes
//! instead of being interpreted by the terminal or the UI.

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

/// Warnings about text that may mislead a reader even when every character is visible.
pub fn warnings(s: &str) -> Vec<&'static str> {
    let mut w = Vec::new();
    if s.chars().any(|c| c != '\n' && is_hidden(c)) {
        w.push("contains control, bidirectional or invisible characters (shown as \\u{...})");
    }
    let has_ascii_letter = s.chars().any(|c| c.is_ascii_alphabetic());
    let has_other_letter = s.chars().any(|c| c.is_alphabetic() && !c.is_ascii());
    if has_ascii_letter && has_other_letter {
        w.push("mixes Latin with other letters (possible look-alike characters)");
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

    #[test]
    fn warnings_flag_hidden_and_mixed_script() {
        assert!(warnings("plain").is_empty());
        assert_eq!(warnings("a\u{202E}b").len(), 1);
        assert_eq!(warnings("pаypal").len(), 1); // Cyrillic а
    }
}
