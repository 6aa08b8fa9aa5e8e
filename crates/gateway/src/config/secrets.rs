//! The secrets the configuration names by file (webhook HMAC keys, the GitHub App's key and
//! webhook secret, the SMTP password), read once when the gateway opens: an unreadable or
//! empty one stops it there, with the file's name, rather than failing every delivery later.

use std::collections::BTreeMap;
use std::path::Path;

use ring::signature::RsaKeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use super::Config;

/// The bytes of a secret file, trailing white space dropped; an empty one is refused.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    if end == 0 {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(bytes[..end].to_vec())
}

/// An RSA private key (PEM, PKCS#1 as GitHub issues an App's key, or PKCS#8).
pub fn load_rsa_key(path: &Path) -> Result<RsaKeyPair, String> {
    let err = |why: String| format!("{}: {why}", path.display());
    let der = PrivateKeyDer::from_pem_file(path).map_err(|e| err(e.to_string()))?;
    match &der {
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        _ => return Err(err("not an RSA key".into())),
    }
    .map_err(|e| err(e.to_string()))
}

/// The GitHub App's secrets.
pub struct GithubSecrets {
    /// The App's RSA key, which signs its JWTs.
    pub key: RsaKeyPair,
    /// The key of `X-Hub-Signature-256`.
    pub webhook_secret: Vec<u8>,
}

/// Every secret of the configuration, loaded.
#[derive(Default)]
pub struct Secrets {
    /// Each `[[webhooks]]` destination's HMAC key, by name (absent: not signed).
    pub webhooks: BTreeMap<String, Vec<u8>>,
    pub github: Option<GithubSecrets>,
    /// The SMTP password.
    pub smtp_password: Option<String>,
}

impl Secrets {
    pub fn load(config: &Config) -> Result<Secrets, String> {
        let mut s = Secrets::default();
        for w in &config.webhooks {
            if let Some(p) = &w.secret_file {
                let key = read_secret(p).map_err(|e| format!("[[webhooks]] {}: {e}", w.name))?;
                s.webhooks.insert(w.name.clone(), key);
            }
        }
        if let Some(g) = &config.github {
            s.github = Some(GithubSecrets {
                key: load_rsa_key(&g.private_key_file)
                    .map_err(|e| format!("[github] private_key_file: {e}"))?,
                webhook_secret: read_secret(&g.webhook_secret_file)
                    .map_err(|e| format!("[github] webhook_secret_file: {e}"))?,
            });
        }
        if let Some(p) = config.email.as_ref().and_then(|e| e.password_file.as_ref()) {
            let bytes = read_secret(p).map_err(|e| format!("[email] password_file: {e}"))?;
            s.smtp_password = Some(
                String::from_utf8(bytes)
                    .map_err(|_| format!("[email] password_file {}: not UTF-8", p.display()))?,
            );
        }
        Ok(s)
    }
}
