//! Training data as the server receives it (an upload, or a source's
//! objects): held in memory up to a threshold, written to a temporary file
//! (in TMPDIR, removed when dropped) beyond it, so data larger than the
//! training memory budget is read from disk a part at a time rather than
//! held whole.

use serval_model::dataset::SharedFile;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

use crate::error::ServalError;

/// Received bytes, being written.
pub struct Spool {
    spill_after: usize,
    memory: Vec<u8>,
    disk: Option<(NamedTempFile, tokio::fs::File)>,
    len: u64,
}

/// Received bytes, complete.
#[derive(Debug)]
pub enum Spooled {
    Memory(Vec<u8>),
    Disk(NamedTempFile),
}

fn storage_error(error: std::io::Error) -> ServalError {
    ServalError::Internal(format!(
        "cannot write received training data to a temporary file (in {}): {error}",
        std::env::temp_dir().display()
    ))
}

impl Spool {
    /// A spool that moves to disk once it holds more than `spill_after`
    /// bytes.
    pub fn new(spill_after: usize) -> Self {
        Spool {
            spill_after,
            memory: Vec::new(),
            disk: None,
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ServalError> {
        self.len += bytes.len() as u64;
        if self.disk.is_none() && self.memory.len() + bytes.len() > self.spill_after {
            let file = NamedTempFile::new().map_err(storage_error)?;
            let mut writer = tokio::fs::File::from_std(file.reopen().map_err(storage_error)?);
            writer.write_all(&self.memory).await.map_err(storage_error)?;
            self.memory = Vec::new();
            self.disk = Some((file, writer));
        }
        match &mut self.disk {
            Some((_, writer)) => writer.write_all(bytes).await.map_err(storage_error),
            None => {
                self.memory.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    pub async fn finish(self) -> Result<Spooled, ServalError> {
        match self.disk {
            None => Ok(Spooled::Memory(self.memory)),
            Some((file, mut writer)) => {
                writer.flush().await.map_err(storage_error)?;
                writer.sync_all().await.map_err(storage_error)?;
                Ok(Spooled::Disk(file))
            }
        }
    }
}

impl Spooled {
    /// The data as the model reads it, named `name` in errors; a file on
    /// disk stays this spool's (it is removed when the spool is dropped).
    pub fn shared_file(self, name: &str) -> (SharedFile, Option<NamedTempFile>) {
        match self {
            Spooled::Memory(bytes) => (SharedFile::in_memory(name, bytes), None),
            Spooled::Disk(file) => (SharedFile::on_disk(name, file.path()), Some(file)),
        }
    }

    /// Whether no bytes came (a spool spills only past its threshold, so
    /// a file on disk holds some).
    pub fn is_empty(&self) -> bool {
        match self {
            Spooled::Memory(bytes) => bytes.is_empty(),
            Spooled::Disk(_) => false,
        }
    }

    /// Whether the bytes went to disk.
    pub fn spilled(&self) -> bool {
        matches!(self, Spooled::Disk(_))
    }

    /// The bytes, read back (for tests and small data).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Spooled::Memory(bytes) => Ok(bytes.clone()),
            Spooled::Disk(file) => std::fs::read(file.path()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_past_the_threshold_go_to_disk_and_read_back_whole() {
        let mut small = Spool::new(10);
        small.write(b"abc").await.unwrap();
        let small = small.finish().await.unwrap();
        assert!(!small.spilled());
        assert_eq!(small.read().unwrap(), b"abc");

        let mut large = Spool::new(10);
        for part in [&b"0123456"[..], b"789ab", b"cdef"] {
            large.write(part).await.unwrap();
        }
        assert_eq!(large.len(), 16);
        let large = large.finish().await.unwrap();
        assert!(large.spilled());
        assert_eq!(large.read().unwrap(), b"0123456789abcdef");
        let (file, held) = large.shared_file("the upload");
        let path = held.as_ref().unwrap().path().to_path_buf();
        assert_eq!(file.load().unwrap(), &b"0123456789abcdef"[..]);
        drop(held);
        assert!(!path.exists(), "the temporary file is removed with the spool");
    }
}
