//! `countersign://` deep links: what a link may ask the app to do, and the refusal of everything
//! else. Pure (no Tauri, no I/O) so every rule is a row in the table test below.
//!
//! A deep link can come from any web page or program on the machine, so it is untrusted input
//! and can never decide anything. It may only (a) open the pairing screen with a link the
//! person still has to confirm, or (b) open the detail view of a request. Anything else is
//! refused with a fixed sentence that does not echo the link (the link itself might carry
//! text meant to mislead whoever reads the message).

use crate::PairingLink;
use url::Url;

/// Longer links are refused before parsing. A pairing link is well under this.
pub const MAX_LINK_LEN: usize = 2048;
/// Request ids in links: the protocol allows up to 64 printable ASCII characters; links take
/// only the URL-safe unreserved subset so nothing needs (or may use) percent-encoding.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// What a well-formed deep link asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Offer to pair with this link (the UI asks first). The link is passed on verbatim; it has
    /// been checked by the protocol's own parser.
    Pair { link: String },
    /// Show this request.
    OpenRequest { request_id: String },
}

/// Why a link was refused: one sentence, safe to display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// True when a command-line argument looks like a link at all (as opposed to a flag such as
/// `--hidden`). Only such arguments are parsed; anything with a scheme separator is, so a
/// hostile `https://` or `file://` argument is refused rather than silently ignored.
pub fn looks_like_link(arg: &str) -> bool {
    arg.contains("://") || arg.to_ascii_lowercase().starts_with("countersign:")
}

/// Parses one deep link.
pub fn parse(link: &str) -> Result<LinkAction, Refused> {
    if link.len() > MAX_LINK_LEN {
        return Err(Refused("The link is too long."));
    }
    // Printable ASCII only: no spaces, control, bidirectional or invisible characters, which
    // could make a link read differently from what it does.
    if !link.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refused(
            "The link contains spaces, control or non-ASCII characters.",
        ));
    }
    let url = Url::parse(link).map_err(|_| Refused("The link is not a valid URL."))?;
    if url.scheme() != "countersign" {
        return Err(Refused("Only countersign:// links are accepted."));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused("The link must not carry credentials."));
    }
    if url.port().is_some() {
        return Err(Refused("The link must not name a port."));
    }
    if url.fragment().is_some() {
        return Err(Refused("The link must not carry a fragment."));
    }
    match url.host_str() {
        Some("pair") => {
            PairingLink::parse(link).map_err(|_| {
                Refused("The pairing link is malformed; ask for a new invitation.")
            })?;
            Ok(LinkAction::Pair {
                link: link.to_owned(),
            })
        }
        Some("request") => {
            if url.query().is_some() {
                return Err(Refused("A request link must not carry a query."));
            }
            let path = url.path();
            let id = path
                .strip_prefix('/')
                .ok_or(Refused("A request link must name a request."))?;
            if id.is_empty() {
                return Err(Refused("A request link must name a request."));
            }
            if id.contains('/') {
                return Err(Refused("A request link has exactly one path segment."));
            }
            if id.len() > MAX_REQUEST_ID_LEN
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                || id.bytes().all(|b| b == b'.')
            {
                return Err(Refused("The request id in the link is not valid."));
            }
            // The URL parser resolves dot segments (`/../../x` is `/x`); a link is taken only
            // as written, so one whose text differs from what it parsed to is refused.
            if link != format!("countersign://request/{id}") {
                return Err(Refused(
                    "A request link must be exactly countersign://request/<id>, with no other path segments.",
                ));
            }
            Ok(LinkAction::OpenRequest {
                request_id: id.to_owned(),
            })
        }
        _ => Err(Refused(
            "The link asks for something this app does not do (expected countersign://pair or countersign://request/<id>).",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "3b4c3f0a8d2e6b1c9f7a5d4e3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b";

    fn pair_link() -> String {
        format!("countersign://pair?gateway=http%3A%2F%2F127.0.0.1%3A8443&code=abc123&fp={FP}&exp=4102444800")
    }

    enum Want {
        Pair,
        Open(&'static str),
        Refuse(&'static str),
    }
    use Want::*;

    #[test]
    fn table() {
        let long_id = format!("countersign://request/{}", "a".repeat(65));
        let too_long = format!("countersign://request/{}", "a".repeat(MAX_LINK_LEN));
        let pair = pair_link();
        let pair_with_port = pair.replacen("countersign://pair", "countersign://pair:99", 1);
        let pair_with_fragment = format!("{pair}#x");
        let pair_extra_param = format!("{pair}&redirect=https%3A%2F%2Fevil.example");
        let pair_http_remote = pair.replace("127.0.0.1", "evil.example");
        let cases: Vec<(&str, &str, Want)> = vec![
            (
                "request link",
                "countersign://request/req_01H8XK-2.a",
                Open("req_01H8XK-2.a"),
            ),
            (
                "uuid request",
                "countersign://request/3f2b5c1e-0d1a-4b8e-9c4f-2a6d7e8f9a0b",
                Open("3f2b5c1e-0d1a-4b8e-9c4f-2a6d7e8f9a0b"),
            ),
            ("pairing link", &pair, Pair),
            (
                "other scheme",
                "https://request/abc",
                Refuse("Only countersign://"),
            ),
            (
                "file scheme",
                "file:///etc/passwd",
                Refuse("Only countersign://"),
            ),
            (
                "javascript",
                "javascript:alert(1)",
                Refuse("Only countersign://"),
            ),
            (
                "unknown host",
                "countersign://approve/abc",
                Refuse("does not do"),
            ),
            (
                "uppercase host",
                "countersign://REQUEST/abc",
                Refuse("does not do"),
            ),
            ("no host", "countersign:request/abc", Refuse("does not do")),
            (
                "empty id",
                "countersign://request/",
                Refuse("must name a request"),
            ),
            (
                "no path",
                "countersign://request",
                Refuse("must name a request"),
            ),
            (
                "extra segment",
                "countersign://request/abc/approve",
                Refuse("exactly one path segment"),
            ),
            (
                "trailing slash",
                "countersign://request/abc/",
                Refuse("exactly one path segment"),
            ),
            (
                "percent-encoded id",
                "countersign://request/ab%2Fc",
                Refuse("not valid"),
            ),
            (
                "bidi in id",
                "countersign://request/ab\u{202E}c",
                Refuse("non-ASCII"),
            ),
            (
                "zero-width in host",
                "countersign://re\u{200B}quest/abc",
                Refuse("non-ASCII"),
            ),
            ("space", "countersign://request/ab c", Refuse("spaces")),
            ("newline", "countersign://request/abc\n", Refuse("spaces")),
            (
                "dot segment",
                "countersign://request/..",
                Refuse("must name a request"),
            ),
            ("id too long", &long_id, Refuse("not valid")),
            ("link too long", &too_long, Refuse("too long")),
            (
                "query on request",
                "countersign://request/abc?approve=1",
                Refuse("query"),
            ),
            (
                "fragment",
                "countersign://request/abc#approve",
                Refuse("fragment"),
            ),
            (
                "credentials",
                "countersign://user:pw@request/abc",
                Refuse("credentials"),
            ),
            (
                "username only",
                "countersign://user@request/abc",
                Refuse("credentials"),
            ),
            ("port", "countersign://request:80/abc", Refuse("port")),
            (
                "dot segments resolved away",
                "countersign://request/../../x",
                Refuse("no other path segments"),
            ),
            (
                "a dot segment",
                "countersign://request/./x",
                Refuse("no other path segments"),
            ),
            (
                "up from a segment",
                "countersign://request/a/../x",
                Refuse("no other path segments"),
            ),
            ("pair with port", &pair_with_port, Refuse("port")),
            (
                "pair with fragment",
                &pair_with_fragment,
                Refuse("fragment"),
            ),
            (
                "pair unknown parameter",
                &pair_extra_param,
                Refuse("pairing link is malformed"),
            ),
            (
                "pair remote http",
                &pair_http_remote,
                Refuse("pairing link is malformed"),
            ),
            (
                "pair missing fields",
                "countersign://pair?code=abc",
                Refuse("pairing link is malformed"),
            ),
            ("not a url", "countersign", Refuse("not a valid URL")),
            ("empty", "", Refuse("not a valid URL")),
        ];
        assert!(cases.len() >= 12);
        for (name, input, want) in cases {
            let got = parse(input);
            match (want, got) {
                (Pair, Ok(LinkAction::Pair { link })) => assert_eq!(link, input, "{name}"),
                (Open(id), Ok(LinkAction::OpenRequest { request_id })) => {
                    assert_eq!(request_id, id, "{name}")
                }
                (Refuse(part), Err(Refused(message))) => {
                    assert!(message.contains(part), "{name}: {message:?} lacks {part:?}");
                    assert!(message.ends_with('.') || message.ends_with(")."), "{name}");
                }
                (_, got) => panic!("{name}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn flags_are_not_links() {
        assert!(!looks_like_link("--hidden"));
        assert!(!looks_like_link("/usr/bin/countersign-desktop"));
        assert!(looks_like_link("countersign://request/abc"));
        assert!(looks_like_link("COUNTERSIGN:request"));
        assert!(looks_like_link("https://evil.example"));
    }
}
