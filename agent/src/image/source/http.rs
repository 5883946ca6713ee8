//! http(s) URLs: the stream from an offset (`Range` + `If-Range` on a resume)
//! and closed ranged reads, with every validator and `Content-Range` check in
//! one place: a later answer that names another file (size, ETag) is refused.

use super::origin::{next_source, retry, Failure, Next, Opened, Origin};
use crate::http::error_chain;
use crate::image::error::ImageError;
use crate::image::options::FetchConfig;
use crate::secret::Secret;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{
    HeaderName, AUTHORIZATION, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE, RETRY_AFTER,
};
use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The session's one HTTP client, built at the first request and shared by its origins.
pub(crate) struct SharedClient {
    cfg: FetchConfig,
    client: OnceLock<Result<Client, String>>,
}

impl SharedClient {
    /// A client for `cfg`, not built yet.
    pub(crate) fn new(cfg: FetchConfig) -> SharedClient {
        SharedClient {
            cfg,
            client: OnceLock::new(),
        }
    }

    /// The client, built at the first call.
    pub(crate) fn get(&self) -> Result<Client, String> {
        self.client
            .get_or_init(|| {
                let opts = crate::http::ClientOptions {
                    ca_bundle: self.cfg.ca_bundle.as_deref(),
                    connect_timeout: Some(self.cfg.connect_timeout),
                    read_timeout: Some(self.cfg.stall_timeout),
                };
                crate::http::client(&opts).map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// The `Authorization` value of the next request (a registry's token, fetched anew
/// when it expired), or why there is none to be had.
pub(crate) type Authorize = Box<dyn Fn() -> Result<Option<Secret>, String> + Send>;

/// An http or https URL.
pub(crate) struct HttpOrigin {
    url: String,
    client: Arc<SharedClient>,
    /// Credentials for every request (a registry's blob), if any.
    authorize: Option<Authorize>,
    /// Strong validator (ETag or Last-Modified) of the first answer, for `If-Range`.
    validator: Option<String>,
    /// Size of the file, from the first answer that said.
    len: Option<u64>,
    /// The URL names its bytes by their digest (a registry blob): a resume answered by
    /// a server with another validator (a pull-through cache that has since stored the
    /// blob) is the same file, and the inline digest check holds it to that.
    content_addressed: bool,
}

impl HttpOrigin {
    /// The file at `url`, fetched with `client`.
    pub(crate) fn new(url: &str, client: Arc<SharedClient>) -> HttpOrigin {
        HttpOrigin {
            url: url.to_string(),
            client,
            authorize: None,
            validator: None,
            len: None,
            content_addressed: false,
        }
    }

    /// The same, for a URL that names its content by digest (see `content_addressed`).
    pub(crate) fn content_addressed(mut self) -> HttpOrigin {
        self.content_addressed = true;
        self
    }

    /// The same, sending `authorize`'s `Authorization` with every request. The client
    /// drops it on a redirect to another host, port or scheme.
    pub(crate) fn with_authorization(mut self, authorize: Authorize) -> HttpOrigin {
        self.authorize = Some(authorize);
        self
    }

    fn fetch_error(&self, cause: String) -> ImageError {
        ImageError::Fetch {
            url: self.url.clone(),
            cause,
        }
    }

    /// A GET of the URL, with its credentials.
    fn get(&self) -> Result<RequestBuilder, Failure> {
        let client = self
            .client
            .get()
            .map_err(|cause| next_source(self.fetch_error(cause)))?;
        let mut req = client.get(&self.url);
        if let Some(authorize) = &self.authorize {
            let value = authorize().map_err(|cause| next_source(self.fetch_error(cause)))?;
            if let Some(v) = value.as_ref().and_then(crate::http::secret_header) {
                req = req.header(AUTHORIZATION, v);
            }
        }
        Ok(req)
    }

    /// A request that got no answer: a stall once connected, else a fetch error.
    fn request_error(&self, e: reqwest::Error, offset: u64) -> Failure {
        let error = if e.is_timeout() && !e.is_connect() {
            ImageError::Stalled {
                url: self.url.clone(),
                after: self.client.cfg.stall_timeout,
                offset,
            }
        } else {
            self.fetch_error(error_chain(&e.without_url()))
        };
        Failure {
            no_answer: true,
            ..retry(error)
        }
    }

    /// An answer other than 200/206: wait and retry, or go to the next mirror.
    fn status_failure(&self, resp: &Response, status: u16) -> Failure {
        let error = ImageError::Status {
            url: self.url.clone(),
            status,
        };
        match status {
            429 | 503 => {
                let after = header(resp, RETRY_AFTER).and_then(|v| v.trim().parse().ok());
                Failure {
                    error,
                    next: Next::Retry(after.map(Duration::from_secs)),
                    no_answer: false,
                }
            }
            408 | 500 | 502 | 504 => retry(error),
            _ => next_source(error),
        }
    }

    /// Where a 206 answer starts and the file's size, checked against what was asked.
    fn range_of(&self, resp: &Response, offset: u64) -> Result<(u64, Option<u64>), Failure> {
        let range = header(resp, CONTENT_RANGE).unwrap_or("");
        let (start, total) = parse_content_range(range).ok_or_else(|| {
            next_source(self.fetch_error(format!("unusable Content-Range {range:?}")))
        })?;
        if start != offset {
            let cause = format!("asked for bytes from {offset} but got a range from {start}");
            return Err(next_source(self.fetch_error(cause)));
        }
        Ok((start, total))
    }
}

impl Origin for HttpOrigin {
    fn url(&self) -> &str {
        &self.url
    }

    fn open(&mut self, offset: u64) -> Result<Opened, Failure> {
        let mut req = self.get()?;
        if offset > 0 {
            req = req.header(RANGE, format!("bytes={offset}-"));
            if let Some(v) = &self.validator {
                req = req.header(IF_RANGE, v.as_str());
            }
        }
        let resp = req.send().map_err(|e| self.request_error(e, offset))?;
        let status = resp.status().as_u16();
        if !matches!(status, 200 | 206) {
            return Err(self.status_failure(&resp, status));
        }
        let validator = validator(&resp);
        let (start, total) = if status == 206 {
            self.range_of(&resp, offset)?
        } else {
            (0, resp.content_length())
        };
        if status == 200 && offset > 0 && !self.content_addressed {
            let known = self.validator.as_deref();
            if known.is_some() && validator.is_some() && known != validator.as_deref() {
                let cause =
                    "the file changed on the server during the download; start the write again";
                return Err(next_source(self.fetch_error(cause.into())));
            }
        }
        if validator.is_some() {
            self.validator = validator;
        }
        self.len = self.len.or(total);
        // A server that ignored Range resends from byte 0: skip what we already have.
        Ok(Opened {
            body: Box::new(resp),
            skip: offset - start,
            total,
        })
    }

    fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, Failure> {
        let resp = self
            .get()?
            .header(RANGE, format!("bytes={offset}-{}", offset + len - 1))
            .send()
            .map_err(|e| self.request_error(e, offset))?;
        let status = resp.status().as_u16();
        if status == 200 {
            let cause = "the server ignores Range requests (it answered 200 to one), and this \
                         image (qcow2) is read at random offsets: serve it from a server that \
                         honours Range (any static file server does), or convert it to raw";
            return Err(next_source(self.fetch_error(cause.into())));
        }
        if status == 416 && self.len.is_none_or(|l| offset >= l) {
            // Nothing at or after `offset`: an empty file, or a read past its end.
            return Ok(Vec::new());
        }
        if status != 206 {
            let error = ImageError::Status {
                url: self.url.clone(),
                status,
            };
            let again = matches!(status, 408 | 429 | 500..=599);
            return Err(if again {
                retry(error)
            } else {
                next_source(error)
            });
        }
        let validator = validator(&resp);
        let (_, total) = self.range_of(&resp, offset)?;
        let total = total.ok_or_else(|| {
            let cause = "the server does not say the file's size (Content-Range …/*)";
            next_source(self.fetch_error(cause.into()))
        })?;
        match self.len {
            None => {
                self.len = Some(total);
                self.validator = self.validator.take().or(validator);
            }
            Some(l) if l != total || (validator.is_some() && validator != self.validator) => {
                let cause =
                    "the file changed on the server while it was read; start the write again";
                return Err(next_source(self.fetch_error(cause.into())));
            }
            Some(_) => {}
        }
        let mut body = Vec::with_capacity(len.min(total.saturating_sub(offset)) as usize);
        resp.take(len).read_to_end(&mut body).map_err(|e| {
            retry(self.fetch_error(format!("reading at byte {offset}: {}", error_chain(&e))))
        })?;
        Ok(body)
    }

    fn len(&self) -> Option<u64> {
        self.len
    }

    /// Byte 0 alone; a server that ignores Range answers 200, which is as good an
    /// answer here (its Content-Length is the size; the body is not read).
    fn probe(&mut self) -> Result<Option<u64>, Failure> {
        let resp = self
            .get()?
            .header(RANGE, "bytes=0-0")
            .send()
            .map_err(|e| self.request_error(e, 0))?;
        match resp.status().as_u16() {
            206 => Ok(self.range_of(&resp, 0)?.1),
            200 => Ok(resp.content_length()),
            416 => Ok(Some(0)),
            status => {
                let error = ImageError::Status {
                    url: self.url.clone(),
                    status,
                };
                Err(if matches!(status, 408 | 429 | 500..=599) {
                    retry(error)
                } else {
                    next_source(error)
                })
            }
        }
    }
}

fn header(resp: &Response, name: HeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The answer's strong validator: If-Range may not use a weak ETag.
fn validator(resp: &Response) -> Option<String> {
    header(resp, ETAG)
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| header(resp, LAST_MODIFIED))
        .map(str::to_string)
}

/// `bytes S-E/T` → (S, Some(T)) (T may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::options::RetryPolicy;
    use imprint_tests::server::Server;

    fn origin(url: &str) -> HttpOrigin {
        let cfg = FetchConfig {
            ca_bundle: None,
            connect_timeout: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            signature: None,
            credentials: None,
            registry_signature: None,
            insecure: false,
        };
        HttpOrigin::new(url, Arc::new(SharedClient::new(cfg)))
    }

    /// A download cut after its first KB, the file then served again with the same bytes
    /// and new validators (a plain server whose file was replaced, or a pull-through
    /// cache that has since stored the blob), and the resume: its `If-Range` no longer
    /// matches, so the server answers 200 with the whole file. For a plain URL that is
    /// another file: refused. For a content-addressed one it is the same bytes (the
    /// digest checked inline holds it to that): skipped forward to where it was cut.
    #[test]
    fn a_resume_answered_whole_with_new_validators_is_refused_unless_content_addressed() {
        let server = Server::start();
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for addressed in [false, true] {
            let path = format!("/file-{addressed}");
            server.serve_bytes(&path, body.clone());
            let mut o = origin(&server.url(&path));
            if addressed {
                o = o.content_addressed();
            }
            let mut first = o.open(0).unwrap_or_else(|f| panic!("{}", f.error));
            let mut head = vec![0; 1000];
            first.body.read_exact(&mut head).unwrap();
            drop(first);
            server.serve_bytes(&path, body.clone());
            let resumed = o.open(1000);
            let ifr = server.requests().last().unwrap().if_range.clone();
            assert!(ifr.is_some(), "the resume is validated with If-Range");
            match (addressed, resumed) {
                (false, Err(f)) => assert!(
                    f.error
                        .to_string()
                        .contains("the file changed on the server"),
                    "{}",
                    f.error
                ),
                (false, Ok(_)) => panic!("a plain URL's new file was taken for the old"),
                (true, Ok(mut r)) => {
                    assert_eq!(r.skip, 1000, "the whole file, skipped to where it was cut");
                    let mut rest = Vec::new();
                    r.body.read_to_end(&mut rest).unwrap();
                    assert_eq!(&rest[1000..], &body[1000..]);
                }
                (true, Err(f)) => panic!("a content-addressed resume was refused: {}", f.error),
            }
        }
    }

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, None)));
        assert_eq!(parse_content_range("items 0-9/10"), None);
    }
}
