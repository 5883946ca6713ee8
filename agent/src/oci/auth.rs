//! Registry authentication as a puller does it: nothing until the registry asks
//! (a 401 with `WWW-Authenticate`), then by the challenge's scheme:
//! - `Basic`: the document's username and password on every request;
//! - `Bearer realm=…,service=…[,scope=…]`: a token from the realm (anonymous, or with
//!   the document's username and password as Basic), for the scope the challenge names
//!   or `repository:<name>:pull`; kept until it expires and fetched again then, or when
//!   the registry answers 401 again;
//! - a token the document gives is sent as `Bearer` whatever the challenge.
//!
//! Credentials are [`Secret`]s: never logged, printed or reported. `Authorization` is
//! never sent to another host on a redirect (the HTTP client drops it when the host,
//! port or scheme changes).

use super::error::OciError;
use crate::secret::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::blocking::Client;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Credentials for a registry, from the document (`image.auth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Credentials {
    /// HTTP Basic where the registry asks for it, or exchanged at its token server.
    Password {
        /// The account.
        username: String,
        /// Its password (or an access token used as one).
        password: Secret,
    },
    /// A bearer token sent as it is.
    Token {
        /// The token.
        token: Secret,
    },
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lower-cased).
    pub scheme: String,
    /// `realm`, `service`, `scope`, `error` … (names lower-cased).
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses `Scheme k="v", k2=v2`; `None` for an empty header.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: parse_params(rest),
        })
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `k="v, with comma", k2=v2` → pairs; quoted strings may hold `\"`.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() || chars.next() != Some('=') {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.push((key, value));
    }
}

/// A token and when to stop using it.
struct Token {
    value: Secret,
    until: Instant,
}

#[derive(Default)]
struct State {
    /// The registry's last challenge.
    challenge: Option<Challenge>,
    /// The bearer token for the challenge, once fetched.
    token: Option<Token>,
}

/// The authentication of one registry and repository: its challenge, its token.
pub struct Auth {
    registry: String,
    reference: String,
    repository: String,
    credentials: Option<Credentials>,
    state: Mutex<State>,
}

/// Token-server answers larger than this are refused.
const MAX_TOKEN_BYTES: u64 = 1 << 20;

/// What a token server answers (`token` or the OAuth2 `access_token`).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Auth {
    /// Authentication for `repository` at `registry`, with the document's `credentials`;
    /// `reference` names the image in messages.
    pub fn new(
        registry: &str,
        repository: &str,
        reference: &str,
        credentials: Option<Credentials>,
    ) -> Auth {
        Auth {
            registry: registry.to_string(),
            reference: reference.to_string(),
            repository: repository.to_string(),
            credentials,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, reason: String) -> OciError {
        OciError::Auth {
            registry: self.registry.clone(),
            reference: self.reference.clone(),
            reason,
        }
    }

    /// The `Authorization` value for the next request, if the registry asked for one.
    pub fn header(&self) -> Option<Secret> {
        let st = self.state();
        let challenge = st.challenge.as_ref()?;
        match (&self.credentials, challenge.scheme.as_str()) {
            (Some(Credentials::Token { token }), _) => {
                Some(Secret::new(format!("Bearer {}", token.expose())))
            }
            (Some(Credentials::Password { username, password }), "basic") => {
                Some(basic(username, password))
            }
            (_, "bearer") => st
                .token
                .as_ref()
                .map(|t| Secret::new(format!("Bearer {}", t.value.expose()))),
            _ => None,
        }
    }

    /// Fetches a new token when the one held has expired.
    pub fn ensure_fresh(&self, client: &Client) -> Result<(), OciError> {
        let expired = {
            let st = self.state();
            st.token.as_ref().is_some_and(|t| Instant::now() >= t.until)
        };
        if expired {
            self.refresh(client, None)?;
        }
        Ok(())
    }

    /// After a 401 with `challenge` (or the last one when `None`): gets what the next
    /// request needs. `Ok(false)` when there is nothing new to send.
    pub fn refresh(&self, client: &Client, challenge: Option<&str>) -> Result<bool, OciError> {
        let parsed = match challenge.and_then(Challenge::parse) {
            Some(c) => c,
            None => match self.state().challenge.clone() {
                Some(c) => c,
                None => return Ok(false),
            },
        };
        let had_header = self.header().is_some();
        let scheme = parsed.scheme.clone();
        self.state().challenge = Some(parsed.clone());
        match (&self.credentials, scheme.as_str()) {
            // A given token or password is all there is: send it once.
            (Some(_), "basic") | (Some(Credentials::Token { .. }), _) => Ok(!had_header),
            (_, "bearer") => {
                let token = self.fetch_token(client, &parsed)?;
                self.state().token = Some(token);
                Ok(true)
            }
            (None, "basic") => Ok(false),
            (_, other) => Err(self.fail(format!(
                "the registry asks for the {other:?} authentication scheme; imprint speaks Basic and Bearer"
            ))),
        }
    }

    /// `GET realm?service=…&scope=…`, with Basic credentials if the document has them.
    fn fetch_token(&self, client: &Client, c: &Challenge) -> Result<Token, OciError> {
        let realm = c
            .param("realm")
            .ok_or_else(|| self.fail("its Bearer challenge names no realm".into()))?;
        let mut url = reqwest::Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                self.fail(format!(
                    "its Bearer challenge's realm {realm:?} is not an http(s) URL"
                ))
            })?;
        let scope = c
            .param("scope")
            .map(str::to_string)
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = c.param("service") {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &scope);
        }
        let shown = format!("the token server {}", url.origin().ascii_serialization());
        let mut req = client.get(url.clone());
        if let Some(Credentials::Password { username, password }) = &self.credentials {
            if let Some(v) = crate::http::secret_header(&basic(username, password)) {
                req = req.header(reqwest::header::AUTHORIZATION, v);
            }
        }
        let resp = req.send().map_err(|e| {
            self.fail(format!(
                "{shown} does not answer: {}",
                crate::http::error_chain(&e.without_url())
            ))
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            let advice = match (status, &self.credentials) {
                (401 | 403, Some(_)) => "; check image.auth's username and password",
                (401 | 403, None) => "; the registry needs credentials: give image.auth",
                _ => "",
            };
            return Err(self.fail(format!(
                "{shown} answered HTTP {status} to a token request for {scope}{advice}"
            )));
        }
        let mut body = Vec::new();
        resp.take(MAX_TOKEN_BYTES)
            .read_to_end(&mut body)
            .map_err(|e| self.fail(format!("reading {shown}'s answer: {e}")))?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            self.fail(format!(
                "{shown} answered something that is not a token: {e}"
            ))
        })?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.fail(format!("{shown} answered without a token")))?;
        // Absent, the token lives 60 s; it is dropped a little early to not race its end.
        let life = answer.expires_in.unwrap_or(60).max(1);
        let margin = (life / 10).min(30);
        Ok(Token {
            value: Secret::new(value),
            until: Instant::now() + Duration::from_secs(life - margin),
        })
    }
}

fn basic(username: &str, password: &Secret) -> Secret {
    let pair = zeroize::Zeroizing::new(format!("{username}:{}", password.expose()));
    Secret::new(format!("Basic {}", STANDARD.encode(pair.as_bytes())))
}
