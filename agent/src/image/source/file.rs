//! `file:` URLs: a local file (or one on a mounted share), read where asked.

use super::origin::{next_source, Failure, Opened, Origin};
use crate::image::error::ImageError;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// A `file:///absolute/path` URL.
pub(crate) struct FileOrigin {
    url: String,
    len: Option<u64>,
}

impl FileOrigin {
    /// The file named by `url` (opened at each attempt).
    pub(crate) fn new(url: &str) -> FileOrigin {
        FileOrigin {
            url: url.to_string(),
            len: None,
        }
    }

    fn fail(&self, cause: String) -> Failure {
        next_source(ImageError::Fetch {
            url: self.url.clone(),
            cause,
        })
    }

    fn path(&self) -> Result<PathBuf, Failure> {
        reqwest::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| self.fail("not a valid file URL (file:///absolute/path)".into()))
    }

    /// The file, opened, and its size.
    fn file(&mut self) -> Result<(File, u64), Failure> {
        let path = self.path()?;
        let f =
            File::open(&path).map_err(|e| self.fail(format!("opening {}: {e}", path.display())))?;
        let len = f.metadata().map_err(|e| self.fail(e.to_string()))?.len();
        self.len = Some(len);
        Ok((f, len))
    }
}

impl Origin for FileOrigin {
    fn url(&self) -> &str {
        &self.url
    }

    fn open(&mut self, offset: u64) -> Result<Opened, Failure> {
        let (mut f, len) = self.file()?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| self.fail(e.to_string()))?;
        Ok(Opened {
            body: Box::new(f),
            skip: 0,
            total: Some(len),
        })
    }

    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, Failure> {
        let (f, file_len) = self.file()?;
        let mut v = vec![0u8; len.min(file_len.saturating_sub(offset)) as usize];
        f.read_exact_at(&mut v, offset)
            .map_err(|e| self.fail(format!("reading at byte {offset}: {e}")))?;
        Ok(v)
    }

    fn len(&self) -> Option<u64> {
        self.len
    }
}
