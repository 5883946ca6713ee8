//! The sequential codecs: decompression chosen by the stream's magic bytes, never
//! by the URL. A new codec is a variant here, its magic in [`detect`] and its
//! reader in [`Decoder`]; the writers take it as they take the others.

use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Read};

/// Compression of a served image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
    Xz,
    Gzip,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Gzip => "gzip",
        })
    }
}

/// Recognises the compression from the first bytes of the stream.
pub fn detect(prefix: &[u8]) -> Compression {
    const ZSTD: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    const XZ: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
    // Skippable frames: 0x184D2A50..=0x184D2A5F, little endian.
    let skippable =
        prefix.len() >= 4 && prefix[0] & 0xF0 == 0x50 && prefix[1..4] == [0x2A, 0x4D, 0x18];
    if prefix.starts_with(&ZSTD) || skippable {
        Compression::Zstd
    } else if prefix.starts_with(&XZ) {
        Compression::Xz
    } else if prefix.starts_with(&[0x1F, 0x8B]) {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// A decompressing reader that gives its input back, so the rest can be drained and verified.
pub(crate) enum Decoder<R: BufRead> {
    None(R),
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Xz(liblzma::bufread::XzDecoder<R>),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
}

impl<R: BufRead> Decoder<R> {
    /// Wraps `input` for `compression`; concatenated streams/frames are all decoded.
    pub(crate) fn new(compression: Compression, input: R) -> io::Result<Decoder<R>> {
        Ok(match compression {
            Compression::None => Decoder::None(input),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(input)?),
            Compression::Xz => Decoder::Xz(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
            Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(input)),
        })
    }

    /// The compressed input, positioned after what the decoder consumed.
    pub(crate) fn into_inner(self) -> R {
        match self {
            Decoder::None(r) => r,
            Decoder::Zstd(d) => d.finish(),
            Decoder::Xz(d) => d.into_inner(),
            Decoder::Gzip(d) => d.into_inner(),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::None(r) => r.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Xz(d) => d.read(buf),
            Decoder::Gzip(d) => d.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(c: Compression, compressed: Vec<u8>, plain: &[u8]) {
        assert_eq!(detect(&compressed), c);
        let mut d = Decoder::new(c, io::Cursor::new(compressed)).unwrap();
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn detects_and_decodes_each_format_including_concatenations() {
        let plain: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let z = zstd::encode_all(&plain[..], 3).unwrap();
        // A skippable frame first, then two frames: still zstd, all of it decoded.
        let mut zz = vec![0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3];
        zz.extend_from_slice(&z);
        zz.extend_from_slice(&z);
        roundtrip(
            Compression::Zstd,
            zz,
            &[plain.clone(), plain.clone()].concat(),
        );
        let mut x = liblzma::write::XzEncoder::new(Vec::new(), 1);
        x.write_all(&plain).unwrap();
        let x = x.finish().unwrap();
        roundtrip(
            Compression::Xz,
            [x.clone(), x].concat(),
            &[plain.clone(), plain.clone()].concat(),
        );
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(&plain).unwrap();
        let g = g.finish().unwrap();
        roundtrip(
            Compression::Gzip,
            [g.clone(), g].concat(),
            &[plain.clone(), plain.clone()].concat(),
        );
        roundtrip(Compression::None, plain.clone(), &plain);
    }
}
