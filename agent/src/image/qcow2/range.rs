//! Random access to the served file for the metadata pass: `Range` requests
//! over http(s) (every answer's validator and size must match the first), or
//! positioned reads of a `file:` URL.

use super::map::ReadAt;
use crate::image::source::{error_chain, parse_content_range, FetchConfig};
use crate::image::ImageError;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// Bytes read first: the header, its extensions and a backing file's name.
pub(super) const HEAD_BYTES: u64 = 64 << 10;

enum Via {
    Http(reqwest::blocking::Client),
    File(File),
}

/// One URL of the image, read at chosen offsets.
pub(super) struct RangeSource {
    url: String,
    via: Via,
    cfg: FetchConfig,
    /// Size of the file, from the first answer.
    len: u64,
    /// The first answer's ETag (or Last-Modified): a later one that differs is another file.
    validator: Option<String>,
}

impl RangeSource {
    /// Opens `url` and reads its first bytes (up to [`HEAD_BYTES`]).
    pub(super) fn open(url: &str, cfg: &FetchConfig) -> Result<(RangeSource, Vec<u8>), ImageError> {
        let fail = |cause: String| ImageError::Fetch {
            url: url.to_string(),
            cause,
        };
        let via = if url.starts_with("http://") || url.starts_with("https://") {
            let opts = crate::http::ClientOptions {
                ca_bundle: cfg.ca_bundle.as_deref(),
                connect_timeout: Some(cfg.connect_timeout),
                read_timeout: Some(cfg.stall_timeout),
            };
            Via::Http(crate::http::client(&opts).map_err(|e| fail(e.to_string()))?)
        } else if url.starts_with("file:") {
            let path = reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| fail("not a valid file URL (file:///absolute/path)".into()))?;
            Via::File(
                File::open(&path).map_err(|e| fail(format!("opening {}: {e}", path.display())))?,
            )
        } else {
            return Err(fail(
                "unsupported URL scheme (use http, https or file)".into(),
            ));
        };
        let mut src = RangeSource {
            url: url.to_string(),
            via,
            cfg: cfg.clone(),
            len: 0,
            validator: None,
        };
        if let Via::File(f) = &src.via {
            src.len = f.metadata().map_err(|e| fail(e.to_string()))?.len();
        }
        let head = src.read_range(0, HEAD_BYTES, true)?;
        Ok((src, head))
    }

    /// Size of the file.
    pub(super) fn file_len(&self) -> u64 {
        self.len
    }

    /// The URL read.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Bytes `offset..offset+len` (fewer only when `short_ok` and the file ends first).
    fn read_range(&mut self, offset: u64, len: u64, short_ok: bool) -> Result<Vec<u8>, ImageError> {
        let mut attempt = 0;
        loop {
            let r = match &self.via {
                Via::File(f) => read_file(f, offset, len.min(self.len.saturating_sub(offset)))
                    .map_err(|e| {
                        (
                            self.fetch_error(format!("reading at byte {offset}: {e}")),
                            false,
                        )
                    }),
                Via::Http(c) => {
                    let c = c.clone();
                    self.read_http(&c, offset, len)
                }
            };
            match r {
                Ok(v)
                    if v.len() as u64 == len
                        || (short_ok && offset + v.len() as u64 == self.len) =>
                {
                    return Ok(v)
                }
                Ok(v) => {
                    let cause = format!("asked for {len} bytes at {offset}, got {}", v.len());
                    return Err(self.fetch_error(cause));
                }
                // A dropped connection, a timeout, a 5xx: worth another try.
                Err((e, true)) if attempt < self.cfg.retry.attempts => {
                    attempt += 1;
                    crate::runner::log::debug(&format!("{e}; retrying"));
                    std::thread::sleep(
                        self.cfg.retry.initial_backoff.min(Duration::from_secs(5)) * attempt,
                    );
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One ranged GET; an error says whether trying again could help.
    fn read_http(
        &mut self,
        client: &reqwest::blocking::Client,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, (ImageError, bool)> {
        use reqwest::header::{CONTENT_RANGE, ETAG, LAST_MODIFIED, RANGE};
        let resp = client
            .get(&self.url)
            .header(RANGE, format!("bytes={offset}-{}", offset + len - 1))
            .send()
            .map_err(|e| (self.fetch_error(error_chain(&e.without_url())), true))?;
        let status = resp.status().as_u16();
        if status == 200 {
            let cause = "the server ignores Range requests (it answered 200 to one), and a qcow2 \
                         image is read at random offsets: serve it from a server that honours Range \
                         (any static file server does), or convert it to raw";
            return Err((self.fetch_error(cause.into()), false));
        }
        if status == 416 && self.len == 0 {
            // An empty file: not qcow2; the raw writer reports what it is.
            return Ok(Vec::new());
        }
        if status != 206 {
            let retry = matches!(status, 408 | 429 | 500..=599);
            let error = ImageError::Status {
                url: self.url.clone(),
                status,
            };
            return Err((error, retry));
        }
        let header = |n| {
            resp.headers()
                .get(n)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
        };
        let validator = header(ETAG)
            .filter(|e| !e.starts_with("W/"))
            .or_else(|| header(LAST_MODIFIED))
            .map(str::to_string);
        let range = header(CONTENT_RANGE).unwrap_or("").to_string();
        let refuse = |cause: String| (self.fetch_error(cause), false);
        let (start, total) = parse_content_range(&range)
            .ok_or_else(|| refuse(format!("unusable Content-Range {range:?}")))?;
        let total = total.ok_or_else(|| {
            refuse("the server does not say the file's size (Content-Range …/*)".into())
        })?;
        if start != offset {
            return Err(refuse(format!(
                "asked for bytes from {offset} but got a range from {start}"
            )));
        }
        if self.len == 0 && self.validator.is_none() {
            self.len = total;
            self.validator = validator;
        } else if total != self.len || (validator.is_some() && validator != self.validator) {
            let cause = "the file changed on the server while its qcow2 tables were read; start the write again";
            return Err((self.fetch_error(cause.into()), false));
        }
        let mut body = Vec::with_capacity(len.min(total.saturating_sub(offset)) as usize);
        resp.take(len).read_to_end(&mut body).map_err(|e| {
            let cause = format!("reading at byte {offset}: {}", error_chain(&e));
            (self.fetch_error(cause), true)
        })?;
        Ok(body)
    }

    fn fetch_error(&self, cause: String) -> ImageError {
        ImageError::Fetch {
            url: self.url.clone(),
            cause,
        }
    }
}

fn read_file(f: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; len as usize];
    f.read_exact_at(&mut v, offset)?;
    Ok(v)
}

impl ReadAt for RangeSource {
    type Error = ImageError;
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, ImageError> {
        self.read_range(offset, len as u64, false)
    }
}
