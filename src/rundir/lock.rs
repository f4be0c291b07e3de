//! An advisory lock per run directory: `<run_dir>/.lock`, created exclusively, holding the
//! owner's pid, command and host. `train` (fresh or `--resume`), `analyze` and every `sweep run`
//! line take it before they write, so a second writer gets a one-line error naming the holder
//! instead of mixing two histories in one directory. A lock of this host whose pid is no longer
//! alive (a killed run) is taken over; one of another host (a shared file system under a
//! scheduler) cannot be checked, so it holds until removed by hand. The lock is removed when its
//! guard drops.

use crate::error::{GrokError, Result};
use std::path::{Path, PathBuf};

/// File name of the lock inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// A held lock on one run directory; released (its file removed) on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// False when this process already held the lock (a nested acquire): only the outer guard
    /// removes the file.
    owned: bool,
}

/// This machine's host name (`gethostname`; `localhost` where unavailable), without spaces.
fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; the name is NUL-terminated on success.
        let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if r == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name: String = String::from_utf8_lossy(&buf[..end])
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if !name.is_empty() {
                return name;
            }
        }
    }
    "localhost".into()
}

/// Whether process `pid` is alive (Linux/Unix: `kill(pid, 0)`; elsewhere assumed alive).
fn pid_alive(pid: i32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

impl RunLock {
    /// Takes the lock of the existing directory `dir` for `what` (e.g. `"train"`,
    /// named to a second writer). A lock held by this very process is re-entered; one whose
    /// pid is dead is taken over.
    ///
    /// # Errors
    /// [`GrokError::Locked`] naming the holder's pid and command while it lives;
    /// [`GrokError::Checkpoint`] when `dir` is not a directory; [`GrokError::Io`] when the lock
    /// file cannot be created (a read-only directory).
    pub fn acquire(dir: &Path, what: &str) -> Result<Self> {
        if !dir.is_dir() {
            return Err(GrokError::Checkpoint {
                path: dir.to_path_buf(),
                reason: "no such run directory".into(),
            });
        }
        let path = dir.join(LOCK_FILE);
        let me = std::process::id() as i32;
        let host = host_name();
        // The lock appears whole or not at all: its text is written to a file of this process,
        // then hard-linked to `.lock`, which fails if a lock exists. (Created empty and then
        // written, a reader could find it empty, call it torn, and take a live lock over.)
        // (not `*.tmp`: those are cleared as a killed writer's leftovers, see `prepare_dir`)
        let mine = dir.join(format!("{LOCK_FILE}.{me}"));
        std::fs::write(&mine, format!("{me} {what} {host}\n"))
            .map_err(|e| GrokError::io(&mine, e))?;
        let linked = Self::link(&mine, &path, dir, me, &host);
        let _ = std::fs::remove_file(&mine);
        linked
    }

    fn link(mine: &Path, path: &Path, dir: &Path, me: i32, host: &str) -> Result<Self> {
        let path = path.to_path_buf();
        // two tries: the second after removing a stale lock
        for _ in 0..2 {
            match std::fs::hard_link(mine, &path) {
                Ok(()) => return Ok(Self { path, owned: true }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    // `pid command host`; locks written before the host was recorded are this host's
                    let words: Vec<&str> = text.split_whitespace().collect();
                    let pid: Option<i32> = words.first().and_then(|p| p.parse().ok());
                    let holder = words.get(1).unwrap_or(&"groklab").to_string();
                    let other_host = words.get(2).filter(|h| **h != host);
                    let here = other_host.is_none();
                    match pid {
                        Some(p) if p == me && here => return Ok(Self { path, owned: false }),
                        Some(p) if !here => {
                            return Err(GrokError::Locked {
                                dir: dir.to_path_buf(),
                                pid: p,
                                holder,
                                elsewhere: format!(
                                    ", host {}; if that process is gone, delete {}",
                                    other_host.unwrap_or(&"?"),
                                    path.display()
                                ),
                            })
                        }
                        Some(p) if pid_alive(p) => {
                            return Err(GrokError::Locked {
                                dir: dir.to_path_buf(),
                                pid: p,
                                holder,
                                elsewhere: String::new(),
                            })
                        }
                        // dead holder, or a lock file that is not groklab's
                        _ => {
                            std::fs::remove_file(&path).map_err(|e| GrokError::io(&path, e))?;
                        }
                    }
                }
                Err(e) => return Err(GrokError::io(&path, e)),
            }
        }
        Err(GrokError::io(
            &path,
            std::io::Error::other("lock taken and released repeatedly; try again"),
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_holder_blocks_a_dead_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // pid 1 is always alive: a foreign live holder
        std::fs::write(dir.path().join(LOCK_FILE), "1 train\n").unwrap();
        let err = RunLock::acquire(dir.path(), "analyze")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pid 1") && err.contains("train"), "{err}");
        // a pid above the kernel's pid_max is never alive: stale
        std::fs::write(dir.path().join(LOCK_FILE), "2000000000 train\n").unwrap();
        let lock = RunLock::acquire(dir.path(), "train").unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(
            text,
            format!("{} train {}\n", std::process::id(), host_name())
        );
        // re-entered by the same process; only the outer guard removes the file
        drop(RunLock::acquire(dir.path(), "train").unwrap());
        assert!(dir.path().join(LOCK_FILE).exists());
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        // another host's lock cannot be checked: it holds, and says how to clear it
        std::fs::write(dir.path().join(LOCK_FILE), "2000000000 sweep node17\n").unwrap();
        let err = RunLock::acquire(dir.path(), "train")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("host node17") && err.contains("delete"),
            "{err}"
        );
    }
}
