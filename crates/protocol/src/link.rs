//! The pairing link:
//! `countersign://pair?gateway=<url>&code=<code>&fp=<fingerprint>&exp=<unix>[&tls=<sha256>]`.
//!
//! The link is the only thing the approver has to trust out of band: it carries the gateway's
//! URL, a one-time pairing code and the fingerprint of the gateway's signing key, which the app
//! pins, and for an `https` gateway that serves its own certificate, the SHA-256 of that
//! certificate, which the app pins for every connection. Plain `http` gateway URLs are accepted
//! only for loopback hosts.

use std::fmt;

use url::Url;

use crate::error::ProtocolError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingLink {
    pub gateway: Url,
    pub code: String,
    /// Lowercase hex SHA-256 of the gateway's Ed25519 public key.
    pub fingerprint: String,
    /// When the code stops working, Unix seconds.
    pub expires_at: i64,
    /// Lowercase hex SHA-256 of the gateway's TLS certificate (DER), to pin. Only with `https`.
    pub tls: Option<String>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn bad(m: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidLink(m.into())
}

/// True for hosts that never leave this machine.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks a gateway base URL: https anywhere, http only on loopback, no credentials, query or
/// fragment.
pub fn check_gateway_url(url: &Url) -> Result<(), ProtocolError> {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url) => {}
        "http" => return Err(bad("plain http is only allowed for a loopback gateway")),
        other => return Err(bad(format!("gateway scheme `{other}` is not http(s)"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("gateway URL must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("gateway URL must not carry a query or fragment"));
    }
    if url.host().is_none() {
        return Err(bad("gateway URL has no host"));
    }
    Ok(())
}

impl PairingLink {
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        if s.len() > 4096 {
            return Err(bad("link is too long"));
        }
        let url = Url::parse(s.trim()).map_err(|e| bad(format!("not a URL: {e}")))?;
        if url.scheme() != "countersign" {
            return Err(bad("scheme is not countersign://"));
        }
        if url.host_str() != Some("pair") || !(url.path().is_empty() || url.path() == "/") {
            return Err(bad("not a pairing link (expected countersign://pair?...)"));
        }
        let (mut gateway, mut code, mut fp, mut exp, mut tls) = (None, None, None, None, None);
        for (k, v) in url.query_pairs() {
            let slot = match k.as_ref() {
                "gateway" => &mut gateway,
                "code" => &mut code,
                "fp" => &mut fp,
                "exp" => &mut exp,
                "tls" => &mut tls,
                other => return Err(bad(format!("unknown parameter `{other}`"))),
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(bad(format!("parameter `{k}` is repeated")));
            }
        }
        let gateway = gateway.ok_or_else(|| bad("missing gateway"))?;
        let gateway =
            Url::parse(&gateway).map_err(|e| bad(format!("gateway is not a URL: {e}")))?;
        check_gateway_url(&gateway)?;
        let code = code.ok_or_else(|| bad("missing code"))?;
        if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("code must be 1 to 64 ASCII letters and digits"));
        }
        let fingerprint = fp.ok_or_else(|| bad("missing fp"))?;
        if !is_hex64(&fingerprint) {
            return Err(bad("fp must be 64 lowercase hex characters"));
        }
        if let Some(t) = &tls {
            if !is_hex64(t) {
                return Err(bad("tls must be 64 lowercase hex characters"));
            }
            if gateway.scheme() != "https" {
                return Err(bad("tls is only meaningful for an https gateway"));
            }
        }
        let expires_at = exp
            .ok_or_else(|| bad("missing exp"))?
            .parse::<i64>()
            .map_err(|_| bad("exp is not an integer"))?;
        Ok(PairingLink {
            gateway,
            code,
            fingerprint,
            expires_at,
            tls,
        })
    }
}

impl fmt::Display for PairingLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("gateway", self.gateway.as_str())
            .append_pair("code", &self.code)
            .append_pair("fp", &self.fingerprint)
            .append_pair("exp", &self.expires_at.to_string());
        if let Some(t) = &self.tls {
            q.append_pair("tls", t);
        }
        let q = q.finish();
        write!(f, "countersign://pair?{q}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> PairingLink {
        PairingLink {
            gateway: Url::parse("http://127.0.0.1:8740/").unwrap(),
            code: "Ab12".into(),
            fingerprint: "0f".repeat(32),
            expires_at: 1_700_000_000,
            tls: None,
        }
    }

    #[test]
    fn round_trip() {
        let l = link();
        assert_eq!(PairingLink::parse(&l.to_string()).unwrap(), l);
    }

    #[test]
    fn hostile_links_are_refused() {
        let fp = "0f".repeat(32);
        let cases = [
            "https://pair?gateway=x".to_string(),
            "countersign://evil?gateway=http://127.0.0.1/".to_string(),
            format!("countersign://pair?gateway=http://example.com/&code=a&fp={fp}&exp=1"),
            format!("countersign://pair?gateway=file:///etc/passwd&code=a&fp={fp}&exp=1"),
            format!("countersign://pair?gateway=http://u:p@127.0.0.1/&code=a&fp={fp}&exp=1"),
            format!("countersign://pair?gateway=http://127.0.0.1/&code=a b&fp={fp}&exp=1"),
            "countersign://pair?gateway=http://127.0.0.1/&code=a&fp=XYZ&exp=1".to_string(),
            format!("countersign://pair?gateway=http://127.0.0.1/&code=a&code=b&fp={fp}&exp=1"),
            format!("countersign://pair?gateway=http://127.0.0.1/&code=a&fp={fp}&exp=1&x=1"),
            format!("countersign://pair?gateway=http://127.0.0.1/&code=a&fp={fp}"),
            // A certificate pin for plain http, and a pin that is not a digest.
            format!("countersign://pair?gateway=http://127.0.0.1/&code=a&fp={fp}&exp=1&tls={fp}"),
            format!(
                "countersign://pair?gateway=https://gw.example.com/&code=a&fp={fp}&exp=1&tls=zz"
            ),
        ];
        for c in cases {
            assert!(
                matches!(PairingLink::parse(&c), Err(ProtocolError::InvalidLink(_))),
                "accepted {c}"
            );
        }
    }

    #[test]
    fn https_remote_is_fine() {
        let mut l = link();
        l.gateway = Url::parse("https://gw.example.com/").unwrap();
        assert_eq!(PairingLink::parse(&l.to_string()).unwrap(), l);
        l.tls = Some("ab".repeat(32));
        assert_eq!(PairingLink::parse(&l.to_string()).unwrap(), l);
    }
}
