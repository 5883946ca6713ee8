//! What the served file is, decided once from its first bytes: a stream written
//! in order (raw or compressed by a codec), or a container whose disk is read
//! at random offsets (qcow2). The writer is chosen from this before a byte lands.

use super::chunked::index::is_index;
use super::codec::{detect, Compression};
use super::qcow2::header::is_qcow2;
use serde::Serialize;

/// The shape of a served image, and so the writer that takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// Bytes written in order as they are decoded (`Compression::None`: as served).
    Stream(Compression),
    /// A qcow2 file: the disk it describes is written, its tables read with `Range`.
    Qcow2,
    /// A casync blob index: the disk is its chunks, from chunk stores and the disk itself.
    Casync,
}

impl Container {
    /// Recognises the container from the first bytes of the served file.
    pub fn probe(prefix: &[u8]) -> Container {
        match detect(prefix) {
            Compression::None if is_qcow2(prefix) => Container::Qcow2,
            Compression::None if is_index(prefix) => Container::Casync,
            compression => Container::Stream(compression),
        }
    }

    /// The random-access container whose first bytes a decoded stream starts with,
    /// if any: such a file inside a codec stream cannot be read at random offsets.
    pub fn random_access_in(decoded: &[u8]) -> Option<Container> {
        if is_qcow2(decoded) {
            Some(Container::Qcow2)
        } else {
            is_index(decoded).then_some(Container::Casync)
        }
    }

    /// Whether the served file is not qcow2 (the report names only qcow2).
    pub fn is_not_qcow2(&self) -> bool {
        *self != Container::Qcow2
    }

    /// Whether the disk is the decoded bytes themselves.
    pub fn is_stream(&self) -> bool {
        matches!(self, Container::Stream(_))
    }
}
