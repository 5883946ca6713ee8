//! The HTTP(S) client every network fetch uses: rustls with built-in web roots,
//! or exactly the CA bundle the operator gave (`imprint.ca=`, `--ca`).

use std::path::Path;
use std::time::Duration;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading CA bundle {path}: {source}")]
    ReadCa { path: String, source: std::io::Error },
    #[error("CA bundle {path} holds no usable PEM certificate: {source}")]
    BadCa { path: String, source: reqwest::Error },
    #[error("building the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Options for [`client`].
#[derive(Clone, Debug, Default)]
pub struct ClientOptions<'a> {
    /// PEM bundle to trust instead of the built-in web roots.
    pub ca_bundle: Option<&'a Path>,
    /// Time allowed to connect; reads have their own stall timeout.
    pub connect_timeout: Option<Duration>,
    /// Whole-request timeout (for small requests such as reports); `None` for streams.
    pub read_timeout: Option<Duration>,
}

/// Builds a blocking client. Works with no `/etc/ssl` (the ramdisk has none).
pub fn client(opts: &ClientOptions) -> Result<reqwest::blocking::Client, ClientError> {
    let certs = match opts.ca_bundle {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|source| ClientError::ReadCa { path: path.display().to_string(), source })?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|source| ClientError::BadCa { path: path.display().to_string(), source })?
        }
        None => webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok())
            .collect(),
    };
    let b = reqwest::blocking::Client::builder()
        .user_agent(concat!("imprint/", env!("CARGO_PKG_VERSION")))
        .tls_certs_only(certs)
        .connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(10)))
        // Whole-request timeouts would kill long image downloads; callers bound stalls.
        .timeout(opts.read_timeout);
    Ok(b.build()?)
}
