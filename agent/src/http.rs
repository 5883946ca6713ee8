//! The HTTP(S) client every network fetch uses: rustls with built-in web roots,
//! or exactly the CA bundle the operator gave (`imprint.ca=`, `--ca`).

use std::path::Path;
use std::time::Duration;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading CA bundle {path}: {source}")]
    ReadCa {
        path: String,
        source: std::io::Error,
    },
    #[error("CA bundle {path} holds no usable PEM certificate: {source}")]
    BadCa {
        path: String,
        source: reqwest::Error,
    },
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
    /// Bound on each wait: for the response headers, then for every single body read
    /// (reqwest's blocking `timeout` is per operation, not per request), so it also
    /// serves as a stall timeout for long streams. `None`: wait forever.
    pub read_timeout: Option<Duration>,
}

/// Builds a blocking client. Works with no `/etc/ssl` (the ramdisk has none).
pub fn client(opts: &ClientOptions) -> Result<reqwest::blocking::Client, ClientError> {
    let b = reqwest::blocking::Client::builder()
        .user_agent(USER_AGENT)
        .tls_certs_only(roots(opts)?)
        .connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(10)))
        // Per operation in the blocking client: a long download that keeps moving is never cut.
        .timeout(opts.read_timeout);
    Ok(b.build()?)
}

/// Builds an async client with the same trust and connect timeout, for a thread that
/// drives its own runtime: many small requests without a hop to the blocking client's
/// runtime thread and back for each. One per runtime (a pooled connection belongs to
/// the runtime that opened it); `read_timeout` is not applied (give each request one).
pub fn async_client(opts: &ClientOptions) -> Result<reqwest::Client, ClientError> {
    let b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .tls_certs_only(roots(opts)?)
        .connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(10)));
    Ok(b.build()?)
}

const USER_AGENT: &str = concat!("imprint/", env!("CARGO_PKG_VERSION"));

/// The CA bundle the operator gave, else the built-in web roots.
fn roots(opts: &ClientOptions) -> Result<Vec<reqwest::Certificate>, ClientError> {
    Ok(match opts.ca_bundle {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| ClientError::ReadCa {
                path: path.display().to_string(),
                source,
            })?;
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::BadCa {
                path: path.display().to_string(),
                source,
            })?
        }
        None => webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok())
            .collect(),
    })
}

/// One line describing an error with its causes, `: `-separated (reqwest's Display
/// hides them); a cause already in the line is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// [`error_chain`] of a reqwest error (the name its callers know).
pub fn describe(e: &reqwest::Error) -> String {
    error_chain(e)
}

/// `secret` as a header value marked sensitive (left out of the client's debug
/// output); `None` if it holds characters a header cannot.
pub fn secret_header(secret: &crate::secret::Secret) -> Option<reqwest::header::HeaderValue> {
    let mut v = reqwest::header::HeaderValue::from_str(secret.expose()).ok()?;
    v.set_sensitive(true);
    Some(v)
}
