//! The device key: one Ed25519 key per data directory. It signs decisions, pairing proofs,
//! stream authorisations and audit checkpoints for every paired gateway.
//!
//! Where it lives is the [`KeyStore`] choice:
//!
//! - **Secret Service** (the desktop's keyring: GNOME Keyring, KWallet, KeePassXC): the 32-byte
//!   seed is an item of service `countersign` and a random account name; the data directory keeps
//!   only that name, in `device-key.ref` (not a secret).
//! - **file**: the seed in `device.key`, created with mode 0600 and refused when others can read
//!   it.
//!
//! `auto` (what the CLI and the desktop app use unless told otherwise) puts a new key in the
//! Secret Service when one answers on the session bus, and in the file otherwise. An existing key
//! stays where it is: `device.key` if present, else the item `device-key.ref` names.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use countersign_protocol::KeyPair;

use crate::error::EngineError;

/// The file holding the seed when the key store is a file.
pub const DEVICE_KEY_FILE: &str = "device.key";
/// The file naming the Secret Service item when the key lives there.
pub const DEVICE_KEY_REF_FILE: &str = "device-key.ref";
/// The Secret Service `service` attribute of the device key items.
pub const SECRET_SERVICE_NAME: &str = "countersign";

/// Where a new device key is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyStore {
    /// `device.key`, owner-only. The library default (tests, explicit choice).
    #[default]
    File,
    /// The Secret Service; failing when there is none.
    SecretService,
    /// The Secret Service when one answers, else the file.
    Auto,
}

impl FromStr for KeyStore {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s {
            "file" => Ok(KeyStore::File),
            "secret-service" | "keyring" => Ok(KeyStore::SecretService),
            "auto" => Ok(KeyStore::Auto),
            other => Err(EngineError::InvalidInput(format!(
                "`{other}` is not a key store; choose auto, secret-service or file"
            ))),
        }
    }
}

/// Where the loaded key lives (for `countersign status` style output; never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    File,
    SecretService { account: String },
}

impl KeyLocation {
    pub fn describe(&self) -> String {
        match self {
            KeyLocation::File => format!("file {DEVICE_KEY_FILE} (owner-only)"),
            KeyLocation::SecretService { account } => {
                format!("Secret Service item {SECRET_SERVICE_NAME}/{account}")
            }
        }
    }
}

/// Loads the device key of `dir`, creating it on first use in the store `store` chooses.
pub(crate) fn load_or_create(
    dir: &Path,
    store: KeyStore,
) -> Result<(KeyPair, KeyLocation), EngineError> {
    let file = dir.join(DEVICE_KEY_FILE);
    if let Some(key) = load_file(&file)? {
        return Ok((key, KeyLocation::File));
    }
    let reference = dir.join(DEVICE_KEY_REF_FILE);
    if let Some(account) = read_ref(&reference)? {
        let key = secret_service_get(&account)?;
        return Ok((key, KeyLocation::SecretService { account }));
    }
    let key = KeyPair::generate();
    match store {
        KeyStore::File => {
            create_file(&file, &key)?;
            Ok((key, KeyLocation::File))
        }
        KeyStore::SecretService => {
            let account = store_in_secret_service(&reference, &key)?;
            Ok((key, KeyLocation::SecretService { account }))
        }
        KeyStore::Auto => match store_in_secret_service(&reference, &key) {
            Ok(account) => Ok((key, KeyLocation::SecretService { account })),
            Err(EngineError::KeyStore(why)) => {
                tracing::info!(reason = %why, "no Secret Service: the device key goes in an owner-only file");
                create_file(&file, &key)?;
                Ok((key, KeyLocation::File))
            }
            Err(e) => Err(e),
        },
    }
}

fn load_file(path: &Path) -> Result<Option<KeyPair>, EngineError> {
    let mut f = match OpenOptions::new().read(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::at_path(path, e)),
    };
    let mode = f.metadata()?.permissions().mode();
    // A seed readable by others could sign decisions in this approver's name.
    if mode & 0o077 != 0 {
        return Err(EngineError::KeyPermissions {
            path: path.display().to_string(),
        });
    }
    let mut raw = Vec::with_capacity(32);
    f.read_to_end(&mut raw)?;
    Ok(Some(seed_to_key(&raw, &path.display().to_string())?))
}

fn seed_to_key(raw: &[u8], whence: &str) -> Result<KeyPair, EngineError> {
    let seed: [u8; 32] = raw
        .try_into()
        .map_err(|_| EngineError::Corrupt(format!("{whence} is not a 32-byte key seed")))?;
    Ok(KeyPair::from_seed(&seed))
}

/// Writes `bytes` to a new file with mode 0600; never overwrites (another process may have
/// created it in the meantime).
pub(crate) fn create_private(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| EngineError::at_path(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| EngineError::at_path(path, e))
}

fn create_file(path: &Path, key: &KeyPair) -> Result<(), EngineError> {
    create_private(path, &key.seed())
}

fn read_ref(path: &Path) -> Result<Option<String>, EngineError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::at_path(path, e)),
    };
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some("secret-service"), Some(account)) if valid_account(account) => {
            Ok(Some(account.to_owned()))
        }
        _ => Err(EngineError::Corrupt(format!(
            "{} does not name a Secret Service item",
            path.display()
        ))),
    }
}

fn valid_account(a: &str) -> bool {
    a.starts_with("device-")
        && a.len() <= 64
        && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// How long a Secret Service call may take. A locked keyring can wait for its password prompt
/// forever (or for a prompt nobody can see); the engine does not.
const SECRET_SERVICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs one Secret Service operation on its own thread, giving up after
/// [`SECRET_SERVICE_TIMEOUT`] (the thread is left to finish or block on its own).
pub(crate) fn secret_service<T: Send + 'static>(
    account: &str,
    op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> Result<keyring::Result<T>, EngineError> {
    let account = account.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("secret-service".into())
        .spawn(move || {
            let out = keyring::Entry::new(SECRET_SERVICE_NAME, &account).and_then(|e| op(&e));
            let _ = tx.send(out);
        })
        .map_err(EngineError::Io)?;
    rx.recv_timeout(SECRET_SERVICE_TIMEOUT).map_err(|_| {
        EngineError::KeyStore(format!(
            "no answer within {} s (is the keyring locked, waiting for its password?)",
            SECRET_SERVICE_TIMEOUT.as_secs()
        ))
    })
}

pub(crate) fn key_store_error(e: keyring::Error) -> EngineError {
    EngineError::KeyStore(e.to_string())
}

/// Puts the seed in the Secret Service under a new account name, then records that name in
/// `reference`. A crash between the two leaves an unused item and no key; the next start makes
/// a new one.
fn store_in_secret_service(reference: &Path, key: &KeyPair) -> Result<String, EngineError> {
    let account = format!("device-{}", uuid::Uuid::new_v4().simple());
    let seed = key.seed();
    secret_service(&account, move |e| e.set_secret(&seed))?.map_err(key_store_error)?;
    // Read it back: some stores accept a write they cannot serve (a locked collection).
    let back = secret_service_get(&account)?;
    if back.public() != key.public() {
        return Err(EngineError::KeyStore(
            "the Secret Service returned a different key than it was given".into(),
        ));
    }
    create_private(reference, format!("secret-service\n{account}\n").as_bytes())?;
    Ok(account)
}

fn secret_service_get(account: &str) -> Result<KeyPair, EngineError> {
    match secret_service(account, |e| e.get_secret())? {
        Ok(raw) => seed_to_key(
            &raw,
            &format!("the Secret Service item {SECRET_SERVICE_NAME}/{account}"),
        ),
        Err(keyring::Error::NoEntry) => Err(EngineError::Corrupt(format!(
            "the device key {SECRET_SERVICE_NAME}/{account} is gone from the Secret Service; \
             this device must be paired again"
        ))),
        Err(e) => Err(key_store_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (a, at) = load_or_create(dir.path(), KeyStore::File).unwrap();
        let (b, _) = load_or_create(dir.path(), KeyStore::File).unwrap();
        assert_eq!(at, KeyLocation::File);
        assert_eq!(a.public(), b.public());
        let p = dir.path().join(DEVICE_KEY_FILE);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(dir.path(), KeyStore::File),
            Err(EngineError::KeyPermissions { .. })
        ));
    }

    #[test]
    fn a_damaged_reference_or_seed_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DEVICE_KEY_REF_FILE),
            "secret-service\n../x\n",
        )
        .unwrap();
        assert!(matches!(
            load_or_create(dir.path(), KeyStore::File),
            Err(EngineError::Corrupt(m)) if m.contains(DEVICE_KEY_REF_FILE)
        ));
        let dir = tempfile::tempdir().unwrap();
        create_private(&dir.path().join(DEVICE_KEY_FILE), b"short").unwrap();
        assert!(matches!(
            load_or_create(dir.path(), KeyStore::File),
            Err(EngineError::Corrupt(m)) if m.contains("32-byte")
        ));
    }

    #[test]
    fn key_store_names_parse() {
        assert_eq!("auto".parse::<KeyStore>().unwrap(), KeyStore::Auto);
        assert_eq!("file".parse::<KeyStore>().unwrap(), KeyStore::File);
        assert_eq!(
            "secret-service".parse::<KeyStore>().unwrap(),
            KeyStore::SecretService
        );
        assert!("kwallet".parse::<KeyStore>().is_err());
    }
}
