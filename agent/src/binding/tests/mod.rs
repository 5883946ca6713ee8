//! Interoperability with the real tools, both directions: Debian's tang server and clevis,
//! swtpm reached by imprint over TCP and by clevis through tpm2-tools' swtpm TCTI.

mod interop;
mod luks;

use super::*;
use imprint_tests::swtpm::Swtpm;
use imprint_tests::tang::{clevis, TangServer};
use std::time::Duration;

/// A context whose TPM is `tpm` and whose tang retries are short.
fn ctx(tpm: Option<&Swtpm>) -> Context {
    Context {
        tpm: tpm
            .map(|t| TpmLocation::Tcp(t.addr()))
            .unwrap_or_else(|| TpmLocation::Device("/nonexistent/tpmrm0".into())),
        tang_retry: Retry {
            attempts: 2,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
        },
    }
}

/// The tang pin of a server, pinned to its signing key.
fn tang_pin(t: &TangServer) -> TangConfig {
    TangConfig {
        url: t.url(),
        thumbprint: Some(t.thumbprint()),
        trust_on_first_use: false,
    }
}

/// `clevis decrypt` of a JWE, with tpm2-tools pointed at `tpm`.
fn clevis_decrypt(jwe: &Jwe, tpm: Option<&Swtpm>) -> Result<Vec<u8>, String> {
    let tcti = tpm.map(Swtpm::tcti).unwrap_or_default();
    clevis(
        &["decrypt"],
        jwe.to_compact().as_bytes(),
        &[("TPM2TOOLS_TCTI", &tcti)],
    )
}

/// `clevis encrypt PIN CFG` of `secret`, parsed.
fn clevis_encrypt(pin: &str, cfg: &str, secret: &[u8], tpm: Option<&Swtpm>) -> Jwe {
    let tcti = tpm.map(Swtpm::tcti).unwrap_or_default();
    let out = clevis(&["encrypt", pin, cfg], secret, &[("TPM2TOOLS_TCTI", &tcti)]).unwrap();
    Jwe::from_compact(std::str::from_utf8(&out).unwrap()).unwrap()
}
