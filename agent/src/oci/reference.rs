//! `oci://registry[:port]/repository[:tag][@sha256:<hex>]`: which registry, which
//! repository, and what names the manifest (a tag, a digest, or both; a digest wins).

use super::digest::parse_digest;
use crate::plan::Digest;
use std::fmt;

/// The scheme prefix of a registry reference.
pub const SCHEME: &str = "oci://";

/// A parsed registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (the first path component is always the registry).
    pub registry: String,
    /// The repository path, such as `images/debian`.
    pub repository: String,
    /// The tag, if one was written (only a label when a digest is given too).
    pub tag: Option<String>,
    /// The pinned manifest digest, if one was written.
    pub digest: Option<Digest>,
}

/// Why a reference does not parse: a sentence about the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reference:?} is not a registry reference: {reason} (expected oci://registry[:port]/repository[:tag][@sha256:<64 hex digits>])")]
pub struct ReferenceError {
    /// The text as written.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Reference {
    /// Parses `oci://…`; a reference needs a tag or a digest (no implicit `latest`).
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| fail("it does not start with oci://"))?;
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("it contains white space or control characters"));
        }
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| fail("it names no repository after the registry"))?;
        check_registry(registry).map_err(|r| fail(&r))?;
        let (named, digest) = match path.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(d).map_err(|r| fail(&r))?)),
            None => (path, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last = named.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match named[last..].rfind(':') {
            Some(i) => (&named[..last + i], Some(&named[last + i + 1..])),
            None => (named, None),
        };
        check_repository(repository).map_err(|r| fail(&r))?;
        if let Some(t) = tag {
            check_tag(t).map_err(|r| fail(&r))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(fail(
                "it names neither a tag nor a digest; add :<tag> or, better, @sha256:<manifest digest>",
            ));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// What the manifest is asked for by: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => super::digest::oci_string(d),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The host without its port, as a URL host (`[…]` kept for IPv6).
    fn host(&self) -> &str {
        match self.registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => self
                .registry
                .rsplit_once(':')
                .map_or(self.registry.as_str(), |(h, _)| h),
        }
    }

    /// Plain HTTP for a registry on the loopback interface (as container engines treat
    /// 127.0.0.0/8 and localhost), https everywhere else.
    pub fn base_url(&self) -> String {
        let host = self.host();
        let loopback = host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{}", super::digest::oci_string(d))?;
        }
        Ok(())
    }
}

fn check_registry(r: &str) -> Result<(), String> {
    let (host, port) = match r.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) if h.parse::<std::net::Ipv6Addr>().is_ok() => (h, p.strip_prefix(':')),
            _ => return Err(format!("registry {r:?} is not a valid [IPv6]:port")),
        },
        None => match r.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        },
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !r.starts_with('[') && (host.is_empty() || !host.split('.').all(label_ok)) {
        return Err(format!(
            "registry host {host:?} is not a host name or address"
        ));
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p != 0) {
            return Err(format!("registry port {p:?} is not a port number"));
        }
    }
    Ok(())
}

/// The distribution grammar: components of `[a-z0-9]+` joined by `.`, `_`, `__` or
/// runs of `-`, separated by `/`; at most 255 characters.
fn check_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("the repository is empty".into());
    }
    if repo.len() > 255 {
        return Err(format!(
            "the repository has {} characters, more than 255",
            repo.len()
        ));
    }
    for comp in repo.split('/') {
        if !component_ok(comp) {
            return Err(format!(
                "repository component {comp:?} is not lower-case letters and digits joined by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn component_ok(c: &str) -> bool {
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    let bytes: Vec<char> = c.chars().collect();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep: String = bytes[start..i].iter().collect();
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is not letters, digits, '_', '.' or '-' (at most 128, not starting with '.' or '-')"
        ))
    }
}
