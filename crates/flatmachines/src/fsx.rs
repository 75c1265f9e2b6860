//! Reading files that come from outside (config, id lists, machine files,
//! input files, PDFs): a regular file, checked on the open descriptor, and
//! never more than a cap. One place, so every reader refuses `/dev/zero`, a
//! FIFO or a directory the same way. No dependencies on other modules: every
//! layer may use it.

use std::path::Path;

/// Why [`read_text_capped`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum CappedReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A directory, device, FIFO or socket: reading it could block forever
    /// (FIFO) or never end (`/dev/zero`).
    #[error("not a regular file ({kind})")]
    NotRegular { kind: &'static str },
    #[error("larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("not UTF-8 text")]
    NotUtf8,
}

/// Reads a small text file from outside (config, id lists) safely; see
/// [`read_bytes_capped`].
pub fn read_text_capped(path: &Path, limit: u64) -> Result<String, CappedReadError> {
    String::from_utf8(read_bytes_capped(path, limit)?).map_err(|_| CappedReadError::NotUtf8)
}

/// Reads a file from outside safely: the path must be a regular file
/// (checked on the open descriptor, which is opened non-blocking so a FIFO
/// cannot stall the open itself) and at most `limit` bytes are read
/// (`limit + 1` are asked for, so a file that grows meanwhile is still
/// caught).
pub fn read_bytes_capped(path: &Path, limit: u64) -> Result<Vec<u8>, CappedReadError> {
    use std::io::Read as _;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(CappedReadError::NotRegular {
            kind: file_kind(&meta),
        });
    }
    if meta.len() > limit {
        return Err(CappedReadError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(CappedReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// What kind of non-regular file `meta` describes, for error messages.
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}
