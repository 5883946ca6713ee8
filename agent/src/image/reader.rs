//! The reader-level API: the decompressed image as a `Read`, verified at its end
//! (for the rootfs extractor, which consumes the stream itself).

use super::channel::{ChannelReader, Served};
use super::codec::{detect, Compression, Decoder};
use super::error::ImageError;
use super::options::WriteOptions;
use super::source::{Session, Stream};
use super::stages::{decode_failure, drain, image_error, Shared};
use crate::plan::Digest;
use std::io::{self, BufRead, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The decompressed image as a reader; reading past the end fails if the digest
/// does not match. Errors are `io::Error`s wrapping an [`ImageError`].
pub struct VerifiedStream {
    decoder: Option<Decoder<ChannelReader>>,
    compression: Compression,
    shared: Arc<Shared>,
    fetch: Option<std::thread::JoinHandle<(Result<Served, ImageError>, usize)>>,
    finished: bool,
}

/// Opens the image at `urls` for reading, decompressed; the download runs on its own thread.
pub fn open_verified_stream(
    urls: &[String],
    digest: Option<&Digest>,
    opts: &WriteOptions,
) -> Result<VerifiedStream, ImageError> {
    if urls.is_empty() {
        return Err(ImageError::NoSource);
    }
    let stream = Session::new(urls, digest, opts.fetch_config()).stream()?;
    VerifiedStream::start(stream, &urls[0], |_| Ok(()))
}

impl VerifiedStream {
    /// Runs `stream`'s download on its own thread and decompresses what its first
    /// bytes say, once `accept` agrees with that compression.
    pub(crate) fn start(
        stream: Stream,
        url: &str,
        accept: impl FnOnce(Compression) -> Result<(), ImageError>,
    ) -> Result<VerifiedStream, ImageError> {
        let Stream {
            fetcher,
            shared,
            mut input,
            mut gate,
        } = stream;
        // The caller reads what it needs: there is no writer to choose, no reason to wait.
        gate.open();
        let fetch = std::thread::Builder::new()
            .name("image-fetch".into())
            .spawn(move || fetcher.run())
            .map_err(|e| ImageError::Fetch {
                url: url.to_string(),
                cause: format!("starting the download thread: {e}"),
            })?;
        let mut stream = VerifiedStream {
            decoder: None,
            compression: Compression::None,
            shared,
            fetch: Some(fetch),
            finished: false,
        };
        let compression = match input.fill_buf() {
            Ok(prefix) => detect(prefix),
            Err(e) => return Err(stream.explain(e)),
        };
        accept(compression)?;
        stream.compression = compression;
        stream.decoder =
            Some(
                Decoder::new(compression, input).map_err(|e| ImageError::Decode {
                    compression,
                    cause: e.to_string(),
                })?,
            );
        Ok(stream)
    }

    /// The compression detected from the magic bytes.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Bytes of the served file received so far.
    pub fn bytes_downloaded(&self) -> u64 {
        self.shared.downloaded.load(Ordering::Relaxed)
    }

    /// The real cause of `e`: if the download stopped, its own error.
    fn explain(&mut self, e: io::Error) -> ImageError {
        match image_error(e) {
            Ok(ImageError::Cancelled) => match self.fetch.take().map(|h| h.join()) {
                Some(Ok((Err(fetch_error), _))) => fetch_error,
                _ => ImageError::Cancelled,
            },
            Ok(ie) => ie,
            Err(e) => ImageError::Decode {
                compression: self.compression,
                cause: e.to_string(),
            },
        }
    }
}

impl Read for VerifiedStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.finished || out.is_empty() {
            return Ok(0);
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Err(io::Error::other(ImageError::Cancelled));
        };
        match decoder.read(out) {
            Ok(0) => {
                let mut rest = self
                    .decoder
                    .take()
                    .map(Decoder::into_inner)
                    .ok_or_else(|| io::Error::other(ImageError::Cancelled))?;
                let compression = self.compression;
                match drain(&mut rest, compression) {
                    Ok(()) => {
                        self.finished = true;
                        Ok(0)
                    }
                    Err(ImageError::Cancelled) => Err(io::Error::other(
                        self.explain(io::Error::other(ImageError::Cancelled)),
                    )),
                    Err(e) => Err(io::Error::other(e)),
                }
            }
            Ok(n) => Ok(n),
            Err(e) => {
                let err = match self.decoder.take() {
                    Some(d) => decode_failure(e, self.compression, d),
                    None => ImageError::Cancelled,
                };
                let err = match err {
                    ImageError::Cancelled => self.explain(io::Error::other(ImageError::Cancelled)),
                    other => other,
                };
                Err(io::Error::other(err))
            }
        }
    }
}

impl Drop for VerifiedStream {
    fn drop(&mut self) {
        // Stop the download; dropping the decoder closes its channel.
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.decoder = None;
    }
}
