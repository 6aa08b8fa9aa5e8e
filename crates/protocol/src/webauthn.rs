//! WebAuthn client data as WebAuthn Level 3 defines it (docs/protocol.md 5a): the origin
//! serialisation, the `clientDataJSON` a device builds itself, and the checks a gateway makes
//! on a received one before its WebAuthn library runs.
//!
//! webauthn-rs-proto's `CollectedClientData` writes the origin from a URL (`https://localhost/`,
//! with a path) and always writes `"tokenBinding": null`; neither is valid WebAuthn, so a
//! standards-strict relying party refuses such an assertion. Devices therefore hand the
//! authenticator only the hash of the bytes built here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use url::Url;

/// The largest `clientDataJSON` a gateway reads, in bytes.
pub const MAX_CLIENT_DATA_BYTES: usize = 1024;

/// Which ceremony the client data is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceremony {
    /// Authentication: `webauthn.get`.
    Get,
    /// Registration: `webauthn.create`.
    Create,
}

impl Ceremony {
    pub fn as_str(self) -> &'static str {
        match self {
            Ceremony::Get => "webauthn.get",
            Ceremony::Create => "webauthn.create",
        }
    }
}

/// The ASCII serialisation of `url`'s origin (WHATWG HTML): `scheme://host[:port]`, the port
/// only when it is not the scheme's default, never a path. `None` for an opaque origin.
pub fn origin_serialization(url: &Url) -> Option<String> {
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Whether `s` is exactly an origin serialisation (no path, not even `/`, no query, fragment,
/// user info, uppercase host or default port written out).
pub fn is_origin_serialization(s: &str) -> bool {
    Url::parse(s)
        .ok()
        .and_then(|u| origin_serialization(&u))
        .is_some_and(|o| o == s)
}

/// The `clientDataJSON` bytes a device builds: exactly WebAuthn Level 3's serialisation with no
/// optional members, `{"type":…,"challenge":…,"origin":…,"crossOrigin":false}`. `origin` must be
/// an origin serialisation (ASCII without `"` or `\`, so nothing needs escaping).
pub fn client_data_json(ceremony: Ceremony, challenge: &[u8], origin: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"{}","challenge":"{}","origin":"{}","crossOrigin":false}}"#,
        ceremony.as_str(),
        URL_SAFE_NO_PAD.encode(challenge),
        origin
    )
    .into_bytes()
}

/// Why a received `clientDataJSON` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientDataError {
    /// Not a WebAuthn client data object: too long, not one JSON object, a duplicate member,
    /// a wrong `type`, or a `tokenBinding` that is not a dictionary with an allowed status.
    #[error("the client data is not valid WebAuthn client data: {0}")]
    Malformed(String),
    /// The origin is not an origin serialisation, is another origin than the gateway's, or the
    /// ceremony ran cross-origin.
    #[error("the client data names another origin: {0}")]
    WrongOrigin(String),
}

/// The members of one JSON object, with a duplicate name refused.
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out: Vec<(String, serde_json::Value)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if out.iter().any(|(n, _)| *n == k) {
                        return Err(serde::de::Error::custom(format!("duplicate member `{k}`")));
                    }
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks a received `clientDataJSON` (decoded bytes) for `ceremony` against the relying
/// party's `origin`, as docs/protocol.md 5a says: the type, the origin compared as an origin,
/// `crossOrigin` and `topOrigin`, and `tokenBinding`. Other members are ignored, as WebAuthn
/// requires; the challenge is left to the WebAuthn library, which holds the ceremony state.
pub fn check_client_data(
    bytes: &[u8],
    ceremony: Ceremony,
    origin: &Url,
) -> Result<(), ClientDataError> {
    use ClientDataError::{Malformed, WrongOrigin};
    if bytes.len() > MAX_CLIENT_DATA_BYTES {
        return Err(Malformed(format!(
            "{} bytes, more than {MAX_CLIENT_DATA_BYTES}",
            bytes.len()
        )));
    }
    let Members(members) = serde_json::from_slice(bytes).map_err(|e| Malformed(format!("{e}")))?;
    let get = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    match get("type").and_then(|v| v.as_str()) {
        Some(t) if t == ceremony.as_str() => {}
        other => {
            return Err(Malformed(format!(
                "type is {other:?}, not {:?}",
                ceremony.as_str()
            )))
        }
    }
    if !matches!(get("challenge"), Some(serde_json::Value::String(_))) {
        return Err(Malformed("challenge is not a string".into()));
    }
    let expected = origin_serialization(origin)
        .ok_or_else(|| WrongOrigin("the relying party's origin is opaque".into()))?;
    match get("origin").and_then(|v| v.as_str()) {
        Some(o) if !is_origin_serialization(o) => {
            return Err(WrongOrigin(format!("{o:?} is not an origin serialisation")))
        }
        Some(o) if o != expected => {
            return Err(WrongOrigin(format!("{o:?} is not {expected:?}")));
        }
        Some(_) => {}
        None => return Err(Malformed("origin is not a string".into())),
    }
    match get("crossOrigin") {
        None | Some(serde_json::Value::Bool(false)) => {}
        Some(v) => return Err(WrongOrigin(format!("crossOrigin is {v}"))),
    }
    if get("topOrigin").is_some() {
        return Err(WrongOrigin("topOrigin is present".into()));
    }
    match get("tokenBinding") {
        None => {}
        Some(serde_json::Value::Object(tb)) => match tb.get("status").and_then(|s| s.as_str()) {
            Some("supported" | "not-supported") => {}
            other => {
                return Err(Malformed(format!(
                "tokenBinding.status is {other:?}; this relying party does not use token binding"
            )))
            }
        },
        Some(v) => return Err(Malformed(format!("tokenBinding is {v}, not a dictionary"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp() -> Url {
        Url::parse("https://localhost/").unwrap()
    }

    #[test]
    fn origins_serialise_as_webauthn_says() {
        for (url, origin) in [
            ("https://localhost/", "https://localhost"),
            (
                "https://Approvals.Example.com:443/x?y#z",
                "https://approvals.example.com",
            ),
            (
                "https://approvals.example.com:8443",
                "https://approvals.example.com:8443",
            ),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("https://[::1]:9/", "https://[::1]:9"),
            ("https://bücher.example/", "https://xn--bcher-kva.example"),
        ] {
            let u = Url::parse(url).unwrap();
            assert_eq!(origin_serialization(&u).as_deref(), Some(origin), "{url}");
            assert!(is_origin_serialization(origin), "{origin}");
        }
        for not in [
            "https://localhost/",
            "https://localhost:443",
            "https://LOCALHOST",
            "https://user@localhost",
            "https://localhost?x",
            "localhost",
            "",
        ] {
            assert!(!is_origin_serialization(not), "{not}");
        }
    }

    #[test]
    fn built_client_data_is_the_level_3_serialisation_and_passes_the_checks() {
        let bytes = client_data_json(Ceremony::Get, &[0xfb; 32], "https://localhost");
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"type":"webauthn.get","challenge":"{}","origin":"https://localhost","crossOrigin":false}}"#,
                URL_SAFE_NO_PAD.encode([0xfb; 32])
            )
        );
        assert!(!text.contains("tokenBinding"));
        check_client_data(&bytes, Ceremony::Get, &rp()).unwrap();
        assert!(check_client_data(&bytes, Ceremony::Create, &rp()).is_err());
    }

    /// What webauthn-rs-proto writes, and the other ways client data can be wrong.
    #[test]
    fn strict_checks_refuse_what_webauthn_does_not_allow() {
        let ok = r#""type":"webauthn.get","challenge":"AA""#;
        let cases: &[(&str, bool)] = &[
            // (members after type and challenge, whether the origin is to blame)
            (
                r#","origin":"https://localhost/","tokenBinding":null"#,
                true,
            ),
            (
                r#","origin":"https://localhost","tokenBinding":null"#,
                false,
            ),
            (
                r#","origin":"https://localhost","tokenBinding":{"status":"present","id":"x"}"#,
                false,
            ),
            (
                r#","origin":"https://localhost","tokenBinding":"supported""#,
                false,
            ),
            (r#","origin":"https://localhost:8443""#, true),
            (r#","origin":"https://evil.example""#, true),
            (r#","origin":"https://localhost","crossOrigin":true"#, true),
            (
                r#","origin":"https://localhost","topOrigin":"https://localhost""#,
                true,
            ),
            (
                r#","origin":"https://localhost","origin":"https://localhost""#,
                false,
            ),
            (r#","origin":7"#, false),
        ];
        for (rest, origin) in cases {
            let bytes = format!("{{{ok}{rest}}}");
            let err = check_client_data(bytes.as_bytes(), Ceremony::Get, &rp()).unwrap_err();
            assert_eq!(
                matches!(err, ClientDataError::WrongOrigin(_)),
                *origin,
                "{bytes}: {err}"
            );
        }
        // Allowed: members in another order, unknown members, a supported token binding.
        for good in [
            r#"{"origin":"https://localhost","challenge":"AA","type":"webauthn.get","other":1}"#,
            r#"{"type":"webauthn.get","challenge":"AA","origin":"https://localhost","tokenBinding":{"status":"not-supported"}}"#,
        ] {
            check_client_data(good.as_bytes(), Ceremony::Get, &rp()).unwrap();
        }
        let big = format!(r#"{{"type":"webauthn.get","x":"{}"}}"#, "a".repeat(2000));
        assert!(check_client_data(big.as_bytes(), Ceremony::Get, &rp()).is_err());
        assert!(check_client_data(b"[]", Ceremony::Get, &rp()).is_err());
    }
}
