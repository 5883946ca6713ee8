//! The metadata pass: the header from the stream's first bytes, the L1 and L2
//! tables read at their offsets through the session (the first URL that
//! answers), all before a byte is written.

use super::header::Qcow2Error;
use super::map::{self, Layout, LayoutError, ReadAt};
use crate::image::error::ImageError;
use crate::image::source::{RandomAccess, Session};
use crate::image::stages::PROBE_BYTES;

/// Bytes of the file the header may need: the header, its extensions and a backing file's name.
pub(super) const HEAD_BYTES: usize = PROBE_BYTES;

impl ReadAt for RandomAccess {
    type Error = ImageError;
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, ImageError> {
        self.read_exact_at(offset, len as u64)
    }
}

/// The layout of the file whose first bytes are `head` and whose stream says
/// it has `stream_len` bytes (when it said), and the URL its tables came from.
pub(super) fn read_tables(
    session: &Session,
    head: &[u8],
    stream_len: Option<u64>,
) -> Result<(Layout, String), ImageError> {
    let mut failures = Vec::new();
    for idx in 0..session.len() {
        let mut src = session.random_access(idx);
        match layout_from(&mut src, head, stream_len) {
            Ok(layout) => return Ok((layout, src.url().to_string())),
            // What the file holds will not differ on a mirror.
            Err(e @ ImageError::Qcow2 { .. }) => return Err(e),
            Err(e) => {
                crate::runner::log::warn(&format!("reading the qcow2 tables: {e}"));
                failures.push(e.to_string());
            }
        }
    }
    Err(ImageError::AllSourcesFailed { attempts: failures })
}

fn layout_from(
    src: &mut RandomAccess,
    head: &[u8],
    stream_len: Option<u64>,
) -> Result<Layout, ImageError> {
    let refused = |url: &str, cause: Qcow2Error| ImageError::Qcow2 {
        url: url.to_string(),
        cause,
    };
    // The header comes from the stream itself; a short first buffer means a short file.
    let file_len = match stream_len {
        Some(len) => len,
        None => src.len()?,
    };
    let layout = map::read_layout(src, file_len, head).map_err(|e| match e {
        LayoutError::Read(e) => e,
        LayoutError::Refused(cause) => refused(src.url(), cause),
    })?;
    // Another size at this URL than in the stream: another file.
    if src.len()? != file_len {
        return Err(ImageError::Fetch {
            url: src.url().to_string(),
            cause: "the file changed on the server while its qcow2 tables were read; start the write again".into(),
        });
    }
    Ok(layout)
}
