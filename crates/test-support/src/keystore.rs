//! A device key read back from where the approver engine keeps it: the data directory's
//! `device.key`, or the Secret Service item its `device-key.ref` names.

use std::path::Path;

/// The device key seed of an approver data directory, wherever it is kept: `device.key`, or the
/// Secret Service item `device-key.ref` names.
pub fn device_seed(data_dir: &Path) -> Vec<u8> {
    if let Ok(seed) = std::fs::read(data_dir.join(countersign_approver::DEVICE_KEY_FILE)) {
        return seed;
    }
    let account = secret_service_account(data_dir)
        .expect("the data directory has neither device.key nor device-key.ref");
    keyring::Entry::new(countersign_approver::SECRET_SERVICE_NAME, &account)
        .unwrap()
        .get_secret()
        .unwrap()
}

/// The Secret Service account `device-key.ref` names, if the key lives there.
pub fn secret_service_account(data_dir: &Path) -> Option<String> {
    let text =
        std::fs::read_to_string(data_dir.join(countersign_approver::DEVICE_KEY_REF_FILE)).ok()?;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("secret-service"));
    lines.next().map(str::to_owned)
}

/// True when a Secret Service answers on the session bus (a lookup of an item that does not
/// exist says "no entry" rather than failing).
pub fn secret_service_available() -> bool {
    match keyring::Entry::new("countersign-test-probe", "probe").and_then(|e| e.get_secret()) {
        Ok(_) | Err(keyring::Error::NoEntry) => true,
        Err(_) => false,
    }
}
