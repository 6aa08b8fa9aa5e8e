//! Starting at login: an XDG autostart entry (`$XDG_CONFIG_HOME/autostart/countersign.desktop`)
//! that starts the agent, so requests arrive and notify from login on, with no window and no
//! WebKit until one is asked for.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The entry's file name.
pub const ENTRY: &str = "countersign.desktop";

/// The entry versions before the agent wrote (Tauri's autostart plugin, named after the
/// product), which starts the window program with `--hidden`. It is removed whenever the
/// setting is applied, so that turning "start at login" off also turns it off for them.
pub const LEGACY_ENTRY: &str = "Countersign.desktop";

#[derive(Debug, thiserror::Error)]
pub enum AutostartError {
    #[error("there is no configuration directory (neither XDG_CONFIG_HOME nor HOME is set)")]
    NoConfigDir,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The user's autostart directory.
pub fn autostart_dir() -> Result<PathBuf, AutostartError> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .ok_or(AutostartError::NoConfigDir)?;
    Ok(config.join("autostart"))
}

/// Writes (`enabled`) or removes the entry for the agent program in the user's autostart
/// directory.
pub fn apply(enabled: bool) -> Result<(), AutostartError> {
    let dir = autostart_dir()?;
    remove_legacy_entry(&dir)?;
    if enabled {
        write_entry(&dir, &agent_path())
    } else {
        remove_entry(&dir)
    }
}

/// Removes the earlier versions' entry, when it is theirs (it starts `countersign-desktop`).
pub fn remove_legacy_entry(dir: &Path) -> Result<(), AutostartError> {
    let path = dir.join(LEGACY_ENTRY);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.contains(crate::paths::DESKTOP_PROGRAM) => {
            std::fs::remove_file(&path).map_err(|source| AutostartError::Io { path, source })
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(AutostartError::Io { path, source }),
    }
}

/// The agent as the entry names it: an absolute path where one is known.
fn agent_path() -> PathBuf {
    let p = crate::paths::agent_program();
    if p.is_absolute() {
        return p;
    }
    // Started from the agent itself (the usual case), its own path is the right one.
    match std::env::current_exe() {
        Ok(exe)
            if exe.file_name().and_then(|n| n.to_str()) == Some(crate::paths::AGENT_PROGRAM) =>
        {
            exe
        }
        _ => p,
    }
}

/// The entry's text, with the program quoted as the Desktop Entry Specification requires for
/// an `Exec` argument.
pub fn entry_text(program: &Path) -> String {
    let mut quoted = String::from("\"");
    for c in program.to_string_lossy().chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    format!(
        "[Desktop Entry]\nType=Application\nName=Countersign\n\
         Comment=Receive approval requests and notify about them\n\
         Exec={quoted}\nTerminal=false\nNoDisplay=true\nX-GNOME-Autostart-enabled=true\n"
    )
}

pub fn write_entry(dir: &Path, program: &Path) -> Result<(), AutostartError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| AutostartError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(ENTRY);
    let tmp = dir.join(format!("{ENTRY}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(entry_text(program).as_bytes())
        .map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

pub fn remove_entry(dir: &Path) -> Result<(), AutostartError> {
    let path = dir.join(ENTRY);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(AutostartError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_starts_the_agent_and_is_removed_again() {
        let dir = tempfile::tempdir().unwrap();
        let autostart = dir.path().join("autostart");
        write_entry(
            &autostart,
            Path::new("/opt/count ersign/bin/countersign-agent"),
        )
        .unwrap();
        let text = std::fs::read_to_string(autostart.join(ENTRY)).unwrap();
        assert!(text.starts_with("[Desktop Entry]\n"));
        assert!(text.contains("\nExec=\"/opt/count ersign/bin/countersign-agent\"\n"));
        remove_entry(&autostart).unwrap();
        assert!(!autostart.join(ENTRY).exists());
        // Removing what is not there is no error.
        remove_entry(&autostart).unwrap();
    }

    #[test]
    fn the_earlier_versions_entry_goes_and_a_strangers_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join(LEGACY_ENTRY);
        std::fs::write(
            &legacy,
            "[Desktop Entry]\nType=Application\nName=Countersign\nExec=/usr/bin/countersign-desktop --hidden\n",
        )
        .unwrap();
        remove_legacy_entry(dir.path()).unwrap();
        assert!(!legacy.exists());
        std::fs::write(&legacy, "[Desktop Entry]\nExec=/opt/other/app\n").unwrap();
        remove_legacy_entry(dir.path()).unwrap();
        assert!(legacy.exists(), "a file of another program is left alone");
        std::fs::remove_file(&legacy).unwrap();
        remove_legacy_entry(dir.path()).unwrap();
    }

    #[test]
    fn reserved_characters_are_escaped() {
        let text = entry_text(Path::new("/a\"b$c`d\\e"));
        assert!(text.contains("Exec=\"/a\\\"b\\$c\\`d\\\\e\"\n"), "{text}");
    }
}
