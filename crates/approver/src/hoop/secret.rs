//! Where a connector's token is kept: beside the device key, in the same store. When the
//! device key lives in the Secret Service, the token is an item there (service `countersign`,
//! account `hoop-<id>`); otherwise it is `hoop-<id>.token` in the data directory, created
//! owner-only and refused when others can read it. The connection row names the place, never
//! the token.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::device::{self, KeyLocation};
use crate::error::EngineError;

/// Where one token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPlace {
    /// A file of the data directory.
    File(String),
    /// A Secret Service account of service `countersign`.
    SecretService(String),
}

impl TokenPlace {
    /// What the connection row keeps: `file:<name>` or `secret-service:<account>`.
    pub fn as_stored(&self) -> String {
        match self {
            TokenPlace::File(n) => format!("file:{n}"),
            TokenPlace::SecretService(a) => format!("secret-service:{a}"),
        }
    }

    pub fn parse(s: &str) -> Result<TokenPlace, EngineError> {
        let valid = |n: &str| {
            n.starts_with("hoop-")
                && n.len() <= 80
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        match s.split_once(':') {
            Some(("file", n)) if valid(n) => Ok(TokenPlace::File(n.to_owned())),
            Some(("secret-service", a)) if valid(a) => Ok(TokenPlace::SecretService(a.to_owned())),
            _ => Err(EngineError::Corrupt(format!(
                "a hoop connection names its token as {s:?}, which is no token place"
            ))),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            TokenPlace::File(n) => format!("file {n} (owner-only)"),
            TokenPlace::SecretService(a) => {
                format!("Secret Service item {}/{a}", device::SECRET_SERVICE_NAME)
            }
        }
    }
}

/// Keeps `token` for connection `id` where the device key is.
pub(crate) fn store(
    dir: &Path,
    key_location: &KeyLocation,
    id: &str,
    token: &str,
) -> Result<TokenPlace, EngineError> {
    match key_location {
        KeyLocation::SecretService { .. } => {
            let account = format!("hoop-{id}");
            let secret = Zeroizing::new(token.as_bytes().to_vec());
            device::secret_service(&account, move |e| e.set_secret(&secret))?
                .map_err(device::key_store_error)?;
            Ok(TokenPlace::SecretService(account))
        }
        KeyLocation::File => {
            let name = format!("hoop-{id}.token");
            device::create_private(&dir.join(&name), token.as_bytes())?;
            Ok(TokenPlace::File(name))
        }
    }
}

/// Reads the token kept at `place`.
pub(crate) fn load(dir: &Path, place: &TokenPlace) -> Result<Zeroizing<String>, EngineError> {
    let bytes = match place {
        TokenPlace::File(name) => {
            let path = dir.join(name);
            let mut f = std::fs::File::open(&path).map_err(|e| EngineError::at_path(&path, e))?;
            if f.metadata()?.permissions().mode() & 0o077 != 0 {
                return Err(EngineError::KeyPermissions {
                    path: path.display().to_string(),
                });
            }
            let mut raw = Zeroizing::new(Vec::new());
            f.read_to_end(&mut raw)?;
            raw
        }
        TokenPlace::SecretService(account) => {
            match device::secret_service(account, |e| e.get_secret())? {
                Ok(raw) => Zeroizing::new(raw),
                Err(keyring::Error::NoEntry) => {
                    return Err(EngineError::Corrupt(format!(
                    "the hoop token {}/{account} is gone from the Secret Service; connect again",
                    device::SECRET_SERVICE_NAME
                )))
                }
                Err(e) => return Err(device::key_store_error(e)),
            }
        }
    };
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
        EngineError::Corrupt(format!(
            "the hoop token in {} is not text",
            place.describe()
        ))
    })?;
    Ok(Zeroizing::new(text))
}

/// Deletes the token kept at `place` (a connection removed); one already gone is fine.
pub(crate) fn forget(dir: &Path, place: &TokenPlace) -> Result<(), EngineError> {
    match place {
        TokenPlace::File(name) => match std::fs::remove_file(dir.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::at_path(&dir.join(name), e)),
        },
        TokenPlace::SecretService(account) => {
            match device::secret_service(account, |e| e.delete_credential())? {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(device::key_store_error(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_token_is_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let place = store(dir.path(), &KeyLocation::File, "0190abcd", "hpk_secret").unwrap();
        assert_eq!(place, TokenPlace::File("hoop-0190abcd.token".into()));
        let meta = std::fs::metadata(dir.path().join("hoop-0190abcd.token")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(load(dir.path(), &place).unwrap().as_str(), "hpk_secret");
        assert_eq!(TokenPlace::parse(&place.as_stored()).unwrap(), place);
        std::fs::set_permissions(
            dir.path().join("hoop-0190abcd.token"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            load(dir.path(), &place),
            Err(EngineError::KeyPermissions { .. })
        ));
        forget(dir.path(), &place).unwrap();
        forget(dir.path(), &place).unwrap();
        assert!(TokenPlace::parse("file:../device.key").is_err());
    }
}
