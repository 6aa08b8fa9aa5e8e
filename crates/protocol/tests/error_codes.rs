//! The error codes of `docs/protocol.md` (section 6.2) and [`ErrorCode`] are the same set: every
//! row of the section's tables names a code this build knows, and every code it knows has a row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use countersign_protocol::api::ErrorCode;

const DOC: &str = include_str!("../../../docs/protocol.md");

/// The first cell of every table row in section 6.2 (`| `code` | status | meaning |`).
fn documented(doc: &str) -> BTreeSet<String> {
    let start = doc
        .find("### 6.2 Error codes")
        .expect("docs/protocol.md has a section 6.2 Error codes");
    let rest = &doc[start..];
    let end = rest[1..].find("\n## ").map_or(rest.len(), |i| i + 1);
    rest[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(code, _)| code.to_owned())
        .collect()
}

#[test]
fn the_documented_codes_are_exactly_the_known_codes() {
    let doc = documented(DOC);
    let known: BTreeSet<String> = ErrorCode::KNOWN.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        known.len(),
        ErrorCode::KNOWN.len(),
        "a code is listed twice"
    );
    let undocumented: Vec<_> = known.difference(&doc).collect();
    let unknown: Vec<_> = doc.difference(&known).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "ErrorCode and docs/protocol.md 6.2 disagree: not documented {undocumented:?}; \
         documented but not in ErrorCode {unknown:?}"
    );
    for code in &doc {
        assert!(
            !matches!(ErrorCode::parse(code), ErrorCode::Unknown(_)),
            "{code}"
        );
    }
}

/// The reader itself: a row is a code, prose and other sections are not.
#[test]
fn the_reader_takes_table_rows_of_section_6_2_only() {
    let doc = "## 6\n| `outside` | 1 | x |\n### 6.2 Error codes\n\nSee `prose_code`.\n\n\
               | Code | Status | Meaning |\n|---|---|---|\n| `first_code` | 400 | A. |\n\
               | `second_code` | 409 | B. |\n\n## 7. Next\n| `later` | 1 | y |\n";
    let got: Vec<_> = documented(doc).into_iter().collect();
    assert_eq!(got, ["first_code", "second_code"]);
}
