//! The desktop app's own settings (`<data dir>/desktop-settings.json`): notification pause,
//! autostart and theme. The engine knows nothing of them.

use std::io::Write;
use std::path::{Path, PathBuf};

use countersign_ipc::{ErrorCode, IpcError, Settings};

pub const SETTINGS_FILE: &str = "desktop-settings.json";

/// Where the settings live in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(SETTINGS_FILE)
}

/// Reads the settings; a missing file gives the defaults. An unreadable file also gives the
/// defaults (logged), so a damaged settings file never keeps the approver from starting.
pub fn load(data_dir: &Path) -> Settings {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(bytes) => match serde_json::from_slice::<Settings>(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "settings unreadable, using defaults");
                Settings::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "settings unreadable, using defaults");
            Settings::default()
        }
    }
}

/// Checks values the UI sent.
pub fn validate(s: &Settings) -> Result<(), IpcError> {
    if !matches!(s.theme.as_str(), "system" | "light" | "dark") {
        return Err(IpcError::new(
            ErrorCode::InvalidInput,
            "The theme must be system, light or dark.",
        ));
    }
    if s.notifications_paused_until.is_some_and(|t| t < 0) {
        return Err(IpcError::new(
            ErrorCode::InvalidInput,
            "The notification pause must end at a time after 1970.",
        ));
    }
    Ok(())
}

/// Writes the settings atomically (temporary file, fsync, rename).
pub fn save(data_dir: &Path, s: &Settings) -> Result<(), IpcError> {
    let io = |e: std::io::Error| {
        IpcError::new(
            ErrorCode::Io,
            format!("The settings could not be saved: {e}."),
        )
    };
    let p = path(data_dir);
    let tmp = p.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(s).map_err(|e| {
        IpcError::new(
            ErrorCode::Io,
            format!("The settings could not be encoded: {e}."),
        )
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &p).map_err(io)?;
    Ok(())
}

/// True when a notification may be shown at `now` (Unix seconds).
pub fn notifications_allowed(s: &Settings, now: i64) -> bool {
    s.notifications_enabled
        && s.notifications_paused_until
            .is_none_or(|until| now >= until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Settings::default());
        let s = Settings {
            notifications_paused_until: Some(100),
            notifications_enabled: true,
            autostart: true,
            theme: "dark".into(),
        };
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()), s);
        std::fs::write(path(dir.path()), b"{not json").unwrap();
        assert_eq!(load(dir.path()), Settings::default());
    }

    #[test]
    fn pause_and_validation() {
        let mut s = Settings::default();
        assert!(notifications_allowed(&s, 50));
        s.notifications_paused_until = Some(100);
        assert!(!notifications_allowed(&s, 50));
        assert!(notifications_allowed(&s, 100));
        s.notifications_enabled = false;
        assert!(!notifications_allowed(&s, 200));
        assert!(validate(&s).is_ok());
        s.theme = "neon".into();
        assert!(validate(&s).is_err());
    }
}
