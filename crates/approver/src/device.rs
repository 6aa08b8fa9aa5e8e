//! The device key: one Ed25519 key per data directory, kept in `device.key` as its 32-byte seed
//! with owner-only permissions. It signs decisions, pairing proofs, stream authorisations and
//! audit checkpoints for every paired gateway.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use countersign_protocol::KeyPair;

use crate::error::EngineError;

/// Loads the device key, creating it on first use.
pub(crate) fn load_or_create(path: &Path) -> Result<KeyPair, EngineError> {
    match OpenOptions::new().read(true).open(path) {
        Ok(mut f) => {
            let mode = f.metadata()?.permissions().mode();
            // A seed readable by others could sign decisions in this approver's name.
            if mode & 0o077 != 0 {
                return Err(EngineError::KeyPermissions {
                    path: path.display().to_string(),
                });
            }
            let mut raw = Vec::with_capacity(32);
            f.read_to_end(&mut raw)?;
            let seed: [u8; 32] = raw.try_into().map_err(|_| {
                EngineError::Corrupt(format!("{} is not a 32-byte key seed", path.display()))
            })?;
            Ok(KeyPair::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate();
            // create_new: never overwrite a key another process created in the meantime.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(&key.seed())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("device.key");
        let a = load_or_create(&p).unwrap();
        let b = load_or_create(&p).unwrap();
        assert_eq!(a.public(), b.public());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&p),
            Err(EngineError::KeyPermissions { .. })
        ));
    }
}
