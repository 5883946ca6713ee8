//! Chunk stores: where a chunk's compressed file is, and what its bytes must be.
//!
//! A store is a folder of `<4 hex>/<id>.cacnk` files (casync and desync write the
//! same layout), served over http(s), or read from a local path (`file:///…`, or
//! `medium:/…` on the filesystem labelled `IMPRINT`). A chunk file is one zstd, xz
//! or gzip stream (chosen by its magic, whatever the suffix says) or the raw bytes;
//! decoded, it must be exactly the index's size and hash to its id.

use super::index::{ChunkDigest, ChunkId};
use crate::image::codec::{detect, Compression};
use reqwest::StatusCode;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// How chunk-fetching threads connect: the session's trust and connect timeout.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpConf {
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout: Duration,
}

/// One thread's HTTP client and the runtime that drives it (built at its first
/// request): its connections stay open from one chunk to the next.
#[derive(Default)]
pub(crate) struct Conn(Option<(tokio::runtime::Runtime, reqwest::Client)>);

impl Conn {
    fn get(
        &mut self,
        conf: &HttpConf,
    ) -> Result<&(tokio::runtime::Runtime, reqwest::Client), Miss> {
        if self.0.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Miss::Failed(format!("starting an HTTP runtime: {e}")))?;
            let opts = crate::http::ClientOptions {
                ca_bundle: conf.ca_bundle.as_deref(),
                connect_timeout: Some(conf.connect_timeout),
                read_timeout: None,
            };
            let client = crate::http::async_client(&opts)
                .map_err(|e| Miss::Failed(format!("building an HTTP client: {e}")))?;
            self.0 = Some((rt, client));
        }
        Ok(self.0.as_ref().expect("built above"))
    }
}

/// Where chunks are read from.
pub(crate) enum Store {
    /// An http(s) base URL.
    Http { url: String, conf: HttpConf },
    /// A folder on a local filesystem.
    Dir { url: String, path: PathBuf },
}

/// Why a store did not give a chunk.
#[derive(Debug)]
pub(crate) enum Miss {
    /// The store does not have it (404, no such file): ask another.
    Absent,
    /// The store failed (connection, 5xx, I/O): it may be going away.
    Failed(String),
}

impl Store {
    /// The store at `url` (`http(s)://`, `file:///`, or a path already resolved).
    pub(crate) fn new(
        url: &str,
        conf: &HttpConf,
        medium: Option<&PathBuf>,
    ) -> Result<Store, String> {
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Store::Http {
                url: url.to_string(),
                conf: conf.clone(),
            });
        }
        if let Some(rest) = url.strip_prefix(MEDIUM) {
            let root = medium.ok_or_else(|| {
                format!("{url}: no filesystem labelled IMPRINT is mounted to read it from")
            })?;
            return Ok(Store::Dir {
                url: url.to_string(),
                path: root.join(rest.trim_start_matches('/')),
            });
        }
        let path = reqwest::Url::parse(url)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| {
                format!("{url}: a chunk store is an http(s)://, file:/// or medium:/ URL")
            })?;
        Ok(Store::Dir {
            url: url.to_string(),
            path,
        })
    }

    /// The store's URL as the document gave it.
    pub(crate) fn url(&self) -> &str {
        match self {
            Store::Http { url, .. } | Store::Dir { url, .. } => url,
        }
    }

    /// Whether reads come from a local filesystem rather than the network.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self, Store::Dir { .. })
    }

    /// The compressed file of chunk `id` (at most `limit` bytes), into `into`; an http
    /// store asks through the calling thread's `conn`.
    pub(crate) fn get(
        &self,
        id: &ChunkId,
        limit: u64,
        timeout: Duration,
        into: &mut Vec<u8>,
        conn: &mut Conn,
    ) -> Result<(), Miss> {
        into.clear();
        match self {
            Store::Http { url, conf } => {
                let (rt, client) = conn.get(conf)?;
                let url = chunk_url(url, id);
                rt.block_on(http_get(client, &url, limit, timeout, into))
            }
            Store::Dir { path, .. } => {
                let file = path.join(id.store_path());
                let f = match std::fs::File::open(&file) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // A store written uncompressed names the chunk by its id alone.
                        let raw = file.with_extension("");
                        std::fs::File::open(&raw).map_err(|_| Miss::Absent)?
                    }
                    Err(e) => return Err(Miss::Failed(format!("{}: {e}", file.display()))),
                };
                if let Ok(m) = f.metadata() {
                    into.reserve(m.len().min(limit) as usize + 1);
                }
                f.take(limit + 1)
                    .read_to_end(into)
                    .map_err(|e| Miss::Failed(format!("{}: {e}", file.display())))?;
                Ok(())
            }
        }
    }
}

/// The scheme of a store on the medium labelled `IMPRINT`.
pub(crate) const MEDIUM: &str = "medium:";

/// `<store>/<4 hex>/<id>.cacnk`, the store URL's query (a token) kept.
fn chunk_url(store: &str, id: &ChunkId) -> String {
    let (base, query) = match store.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (store, None),
    };
    let mut url = format!("{}/{}", base.trim_end_matches('/'), id.store_path());
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

async fn http_get(
    client: &reqwest::Client,
    url: &str,
    limit: u64,
    timeout: Duration,
    into: &mut Vec<u8>,
) -> Result<(), Miss> {
    let failed = |e: reqwest::Error| Miss::Failed(crate::http::error_chain(&e));
    let mut resp = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(failed)?;
    match resp.status() {
        s if s.is_success() => {}
        StatusCode::NOT_FOUND | StatusCode::GONE => return Err(Miss::Absent),
        s => return Err(Miss::Failed(format!("HTTP {}", s.as_u16()))),
    }
    if let Some(n) = resp.content_length() {
        into.reserve(n.min(limit) as usize + 1);
    }
    while let Some(piece) = resp.chunk().await.map_err(failed)? {
        into.extend_from_slice(&piece);
        if into.len() as u64 > limit {
            // Longer than any encoding of the chunk: the decoder refuses it.
            break;
        }
    }
    Ok(())
}

/// Why a chunk file's bytes are not the chunk.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Corrupt(pub String);

/// Decodes chunk files, keeping its zstd context from one chunk to the next.
pub(crate) struct Decoder {
    zstd: zstd::bulk::Decompressor<'static>,
}

impl Decoder {
    pub(crate) fn new() -> Decoder {
        Decoder {
            zstd: zstd::bulk::Decompressor::new().expect("allocating a zstd context"),
        }
    }

    /// Decodes a chunk file into `out` and checks it is `size` bytes with id `id`.
    pub(crate) fn decode(
        &mut self,
        file: &[u8],
        size: u64,
        id: &ChunkId,
        digest: ChunkDigest,
        out: &mut Vec<u8>,
    ) -> Result<(), Corrupt> {
        out.clear();
        let compression = detect(file);
        match compression {
            Compression::None => out.extend_from_slice(file),
            Compression::Zstd => {
                // casync writes frames without a content size: the index's size is the
                // room, and a frame that decodes to more does not fit.
                out.reserve(size as usize);
                self.zstd
                    .decompress_to_buffer(file, out)
                    .map_err(|e| Corrupt(format!("zstd: {e}")))?;
            }
            Compression::Xz => read_limited(liblzma::read::XzDecoder::new(file), size, out)?,
            Compression::Gzip => read_limited(flate2::read::GzDecoder::new(file), size, out)?,
        }
        if out.len() as u64 != size {
            return Err(Corrupt(format!(
                "decodes ({compression}) to {} bytes, the index says {size}",
                out.len()
            )));
        }
        let actual = digest.id(out);
        if actual != *id {
            return Err(Corrupt(format!("its bytes hash to {actual}")));
        }
        Ok(())
    }
}

/// Decodes a chunk file and checks it is `size` bytes with id `id`.
pub(crate) fn decode(
    file: &[u8],
    size: u64,
    id: &ChunkId,
    digest: ChunkDigest,
) -> Result<Vec<u8>, Corrupt> {
    let mut out = Vec::new();
    Decoder::new().decode(file, size, id, digest, &mut out)?;
    Ok(out)
}

fn read_limited(r: impl Read, size: u64, out: &mut Vec<u8>) -> Result<(), Corrupt> {
    out.reserve(size as usize + 1);
    r.take(size + 1)
        .read_to_end(out)
        .map_err(|e| Corrupt(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_urls_keep_a_token_and_lose_a_trailing_slash() {
        let id = ChunkId([0xab; 32]);
        let hex = "ab".repeat(32);
        assert_eq!(
            chunk_url("http://h/store/", &id),
            format!("http://h/store/abab/{hex}.cacnk")
        );
        assert_eq!(
            chunk_url("https://h/s?sig=x", &id),
            format!("https://h/s/abab/{hex}.cacnk?sig=x")
        );
    }

    #[test]
    fn decodes_every_codec_and_checks_size_and_id() {
        let data: Vec<u8> = (0..70000u32).map(|i| (i % 251) as u8).collect();
        let d = ChunkDigest::Sha512_256;
        let id = d.id(&data);
        let zstd = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(decode(&zstd, 70000, &id, d).unwrap(), data);
        let mut xz = Vec::new();
        liblzma::read::XzEncoder::new(&data[..], 6)
            .read_to_end(&mut xz)
            .unwrap();
        assert_eq!(decode(&xz, 70000, &id, d).unwrap(), data);
        let mut gz = Vec::new();
        flate2::read::GzEncoder::new(&data[..], flate2::Compression::default())
            .read_to_end(&mut gz)
            .unwrap();
        assert_eq!(decode(&gz, 70000, &id, d).unwrap(), data);
        assert_eq!(decode(&data, 70000, &id, d).unwrap(), data, "raw");
        assert!(
            decode(&zstd, 69999, &id, d).is_err(),
            "longer than the index says"
        );
        let mut flipped = data.clone();
        flipped[5] ^= 1;
        let e = decode(&flipped, 70000, &id, d).unwrap_err();
        assert!(e.0.contains("hash to"), "{e:?}");
        assert!(
            decode(&zstd[..zstd.len() - 3], 70000, &id, d).is_err(),
            "truncated"
        );
    }
}
