//! Why a registry pull failed, as sentences naming the registry, the repository and
//! the reference; the registry's own JSON error (`{"errors":[{code,message}]}`) is
//! read into them.

use super::reference::ReferenceError;
use serde::Deserialize;
use std::time::Duration;

/// Why a registry pull failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Nothing answered (no connection, a timeout, a broken body).
    #[error("asking registry {registry} for {what}: {cause}")]
    NoAnswer {
        registry: String,
        what: String,
        cause: String,
    },
    /// The registry answered with an error status.
    #[error("{}", .0.sentence())]
    Refused(Box<Refusal>),
    /// The manifest is not one this agent can use.
    #[error("the manifest of {reference} cannot be used: {reason}")]
    Manifest { reference: String, reason: String },
    /// Served bytes that are not the ones their digest names.
    #[error("{what} of {reference} has digest {actual}, not {expected}: {consequence}")]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
        consequence: String,
    },
    /// The authentication exchange failed (before the registry saw a credential).
    #[error("authenticating to registry {registry} for {reference}: {reason}")]
    Auth {
        registry: String,
        reference: String,
        reason: String,
    },
}

/// A registry's error answer.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `host[:port]`.
    pub registry: String,
    /// The repository asked for.
    pub repository: String,
    /// The tag or digest asked for.
    pub reference: String,
    /// What was asked: `manifest`, `blob sha256:…`.
    pub what: String,
    /// The HTTP status.
    pub status: u16,
    /// The registry's `code: message` pairs, if its body was the JSON error format.
    pub errors: Vec<(String, String)>,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<u64>,
}

impl Refusal {
    fn sentence(&self) -> String {
        let Refusal {
            registry: r,
            repository: repo,
            reference,
            what,
            status,
            ..
        } = self;
        let said = self.said();
        let code = self.errors.first().map(|(c, _)| c.as_str()).unwrap_or("");
        match (status, code) {
            (401, _) | (_, "UNAUTHORIZED") => format!(
                "registry {r} refused the {what} of {repo} (reference {reference}) without valid credentials{said}; give image.auth (username and password, or a token) or check them"
            ),
            (403, _) | (_, "DENIED") => format!(
                "registry {r} denied access to the {what} of {repo} (reference {reference}){said}; check that these credentials may pull {repo}"
            ),
            (429, _) | (_, "TOOMANYREQUESTS") => format!(
                "registry {r} is limiting the rate of pulls of {repo} (reference {reference}){said}{}",
                match self.retry_after {
                    Some(s) => format!("; it asks to retry after {s} s"),
                    None => String::new(),
                }
            ),
            (404, _) => format!(
                "registry {r} has no {what} in repository {repo} (reference {reference}){said}; check the repository and the tag or digest"
            ),
            _ => format!(
                "registry {r} answered HTTP {status} to the request for the {what} of {repo} (reference {reference}){said}"
            ),
        }
    }

    /// ` (CODE: message; …)` or nothing.
    fn said(&self) -> String {
        if self.errors.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(c, m)| {
                if m.is_empty() {
                    c.clone()
                } else {
                    format!("{c}: {m}")
                }
            })
            .collect();
        format!(" ({})", parts.join("; "))
    }
}

impl OciError {
    /// Whether the same registry may answer better later (a timeout, 5xx, 429), and
    /// how long it asked to wait.
    pub fn transient(&self) -> Option<Option<Duration>> {
        match self {
            OciError::NoAnswer { .. } => Some(None),
            OciError::Refused(r) if matches!(r.status, 408 | 429 | 500..=599) => {
                Some(r.retry_after.map(Duration::from_secs))
            }
            _ => None,
        }
    }

    /// Whether nothing answered at all.
    pub fn no_answer(&self) -> bool {
        matches!(self, OciError::NoAnswer { .. })
    }
}

#[derive(Deserialize)]
struct Body {
    errors: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The `code: message` pairs of a registry's JSON error body (none if it is not one).
pub fn parse_errors(body: &[u8]) -> Vec<(String, String)> {
    serde_json::from_slice::<Body>(body)
        .map(|b| {
            b.errors
                .into_iter()
                .map(|i| (i.code, i.message))
                .filter(|(c, _)| !c.is_empty())
                .collect()
        })
        .unwrap_or_default()
}
