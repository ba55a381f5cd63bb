//! The reserve: a file of a few megabytes kept beside a SQLite registry and
//! given back when a delete finds the disk full, so that the delete (which
//! needs room for its pages in the write-ahead log, and for the last
//! registration's pages to be checkpointed into the file) goes through
//! instead of failing like everything else. It is made again when the
//! registry opens and after a delete that could compact. PostgreSQL keeps
//! its own storage; there is no reserve there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes written at a time while making the reserve.
const BLOCK: usize = 64 * 1024;

/// The reserve of one registry (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct Reserve {
    /// `None`: no reserve (PostgreSQL, an in-memory database, or none asked
    /// for).
    path: Option<PathBuf>,
    bytes: u64,
    /// Bytes held now: `bytes`, or 0 while released or not made.
    held: AtomicU64,
}

impl Reserve {
    /// A reserve of `bytes` beside the SQLite file `database`
    /// (`<database>-reserve`), not made yet; none when `bytes` is 0.
    pub(crate) fn beside(database: &Path, bytes: u64) -> Self {
        let mut path = database.as_os_str().to_owned();
        path.push("-reserve");
        Reserve {
            path: (bytes > 0).then(|| PathBuf::from(path)),
            bytes,
            held: AtomicU64::new(0),
        }
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Makes the reserve file unless it is there whole already. On a disk
    /// without room for it, removes what was written and holds none (the
    /// registry works without it; only a delete on a full disk is then
    /// left to the operator).
    pub(crate) async fn make(&self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let bytes = self.bytes;
        let made = tokio::task::spawn_blocking(move || write_reserve(&path, bytes)).await;
        match made {
            Ok(Ok(())) => self.held.store(bytes, Ordering::Relaxed),
            Ok(Err(error)) => {
                self.held.store(0, Ordering::Relaxed);
                tracing::warn!(
                    path = %self.path_text(),
                    bytes,
                    %error,
                    "no room for the registry's reserve: a delete on a full disk will need room freed first"
                );
            }
            Err(error) => tracing::warn!(%error, "making the registry's reserve failed"),
        }
    }

    /// Gives the reserve's room back to the file system. True when there
    /// was a reserve to give.
    pub(crate) async fn release(&self) -> bool {
        let Some(path) = self.path.clone() else {
            return false;
        };
        if self.held.swap(0, Ordering::Relaxed) == 0 {
            return false;
        }
        match tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(path = %self.path_text(), %error, "cannot release the registry's reserve");
                false
            }
            Err(_) => false,
        }
    }

    fn path_text(&self) -> String {
        self.path
            .as_deref()
            .map(|path| path.display().to_string())
            .unwrap_or_default()
    }
}

/// Writes `bytes` zero bytes to `path` and syncs them (a sparse file
/// would hold no room), unless the file already has that size.
fn write_reserve(path: &Path, bytes: u64) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|meta| meta.len() == bytes) {
        return Ok(());
    }
    let written = (|| {
        let mut file = std::fs::File::create(path)?;
        let block = vec![0u8; BLOCK];
        let mut left = bytes;
        while left > 0 {
            let now = left.min(BLOCK as u64) as usize;
            file.write_all(&block[..now])?;
            left -= now as u64;
        }
        file.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_reserve_is_made_released_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("serval.db");
        let reserve = Reserve::beside(&database, 200_000);
        let path = dir.path().join("serval.db-reserve");

        reserve.make().await;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 200_000);
        assert_eq!(reserve.held(), 200_000);
        assert!(reserve.release().await);
        assert!(!path.exists());
        assert_eq!(reserve.held(), 0);
        assert!(!reserve.release().await, "released once");
        reserve.make().await;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 200_000);

        let none = Reserve::beside(&database, 0);
        none.make().await;
        assert_eq!(none.held(), 0);
        assert!(!none.release().await);
    }
}
