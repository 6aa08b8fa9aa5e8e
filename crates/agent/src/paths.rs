//! Where things are: the data directory (the same rule as the `countersign` CLI, so both open
//! the same store), the agent's socket in it, and the two programs, each found beside the other.

use std::path::{Path, PathBuf};

use countersign_approver::EngineError;
use countersign_ipc::agent::SOCKET_FILE;

/// The agent's program name.
pub const AGENT_PROGRAM: &str = "countersign-agent";
/// The window's program name.
pub const DESKTOP_PROGRAM: &str = "countersign-desktop";

/// The data directory: `COUNTERSIGN_DATA_DIR`, else the engine's default.
pub fn data_dir() -> Result<PathBuf, EngineError> {
    if let Some(d) = std::env::var_os("COUNTERSIGN_DATA_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    countersign_approver::default_data_dir()
}

/// The agent's socket in `data_dir`.
pub fn socket(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// The agent program: `COUNTERSIGN_AGENT`, else `countersign-agent` beside the running
/// program (both are installed in one directory), else the name alone (found on `PATH`).
pub fn agent_program() -> PathBuf {
    program("COUNTERSIGN_AGENT", AGENT_PROGRAM)
}

/// The window program: `COUNTERSIGN_DESKTOP`, else `countersign-desktop` beside the running
/// program, else the name alone.
pub fn desktop_program() -> PathBuf {
    program("COUNTERSIGN_DESKTOP", DESKTOP_PROGRAM)
}

fn program(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|p| p.is_file())
    {
        return sibling;
    }
    PathBuf::from(name)
}
