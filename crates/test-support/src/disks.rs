//! Storage faults for real: a small tmpfs a test fills until the kernel says ENOSPC, a directory
//! made read-only, and a directory's files to compare before and after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// True when this process runs as root (it may mount file systems).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Runs a mount-type command; its error output is the reason it could not.
fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A small tmpfs mounted on a fresh directory, so a test can fill the disk for real. Mounting
/// needs root (CI runs the suite as root); otherwise `mount` says why it cannot. Unmounted on
/// drop.
pub struct SmallDisk {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Result<SmallDisk, String> {
        if !running_as_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let size = format!("size={bytes}");
        run(
            "mount",
            &["-t", "tmpfs", "-o", &size, "tmpfs", path.to_str().unwrap()],
        )?;
        Ok(SmallDisk { path, _dir: dir })
    }

    /// Fills the disk with a file until the kernel says it is full (ENOSPC), then shrinks the
    /// file so that `free` bytes remain. Returns the file, to delete when space should return.
    pub fn fill_leaving(&self, free: u64) -> PathBuf {
        use std::io::Write;
        let p = self.path.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(free)).unwrap();
        f.sync_all().unwrap();
        p
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Makes a directory read-only until dropped: as root a read-only bind mount over it (root
/// ignores permission bits), otherwise permission bits (directories 0500, files 0400). Says why
/// when neither is possible (root without the right to mount).
pub struct ReadOnly {
    path: PathBuf,
    mounted: bool,
    modes: Vec<(PathBuf, u32)>,
}

impl ReadOnly {
    pub fn apply(path: &Path) -> Result<ReadOnly, String> {
        use std::os::unix::fs::PermissionsExt;
        let p = path.to_str().unwrap();
        if running_as_root() {
            run("mount", &["--bind", p, p])?;
            let ro = ReadOnly {
                path: path.to_path_buf(),
                mounted: true,
                modes: Vec::new(),
            };
            run("mount", &["-o", "remount,bind,ro", p])?;
            return Ok(ro);
        }
        let mut modes = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.push(path.to_path_buf());
        for e in entries {
            let meta = std::fs::metadata(&e).unwrap();
            modes.push((e.clone(), meta.permissions().mode()));
            let ro = if meta.is_dir() { 0o500 } else { 0o400 };
            std::fs::set_permissions(&e, std::fs::Permissions::from_mode(ro)).unwrap();
        }
        Ok(ReadOnly {
            path: path.to_path_buf(),
            mounted: false,
            modes,
        })
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        }
        for (p, mode) in self.modes.iter().rev() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode));
        }
    }
}

/// The regular files directly in `dir`, by name, with their bytes.
pub fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}
