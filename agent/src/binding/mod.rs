//! clevis-compatible bindings written natively: tang, TPM2 and sss (threshold) pins that
//! produce exactly the JWEs `clevis encrypt` writes, so the deployed OS's own clevis
//! unlocks them at boot; plus imprint's own decryptor, used to verify every binding.
//!
//! A [`Pin`] mirrors the document's luks section. One pin gives that pin's JWE; several
//! give an sss JWE whose threshold is `Pin::threshold`. [`luks`] stores the result as a
//! LUKS2 `clevis` token next to its own keyslot.

pub mod jose;
pub mod luks;
pub mod sss;
pub mod tang;
pub mod tpm2;

#[cfg(test)]
mod tests;

pub use jose::Jwe;
pub use tang::{Retry, TangConfig};
pub use tpm2::{PcrBank, Tpm2Config, TpmLocation};
use zeroize::Zeroizing;

/// Why binding or unbinding failed.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("nothing to bind to: the pin has no tang server and no TPM")]
    NoPins,
    #[error("tang: {0}")]
    Tang(#[from] tang::TangError),
    #[error("tpm2: {0}")]
    Tpm2(#[from] tpm2::Tpm2Error),
    #[error("sss: {0}")]
    Sss(#[from] sss::SssError),
    #[error(transparent)]
    Jose(#[from] jose::JoseError),
    #[error("unknown clevis pin {0:?} in the JWE (imprint decrypts tang, tpm2 and sss)")]
    UnknownPin(String),
}

/// What to bind to: the luks section of the document.
#[derive(Debug, Clone, Default)]
pub struct Pin {
    pub tang: Vec<TangConfig>,
    pub tpm2: Option<Tpm2Config>,
    /// How many of the pins must agree (clevis sss `t`); only used with two or more pins.
    pub threshold: u32,
}

impl Pin {
    /// The pin of a planned LUKS volume.
    pub fn from_plan(l: &crate::plan::LuksPlan) -> Pin {
        Pin {
            tang: l
                .tang
                .iter()
                .map(|t| TangConfig {
                    url: t.url.clone(),
                    thumbprint: t.thumbprint.clone(),
                    trust_on_first_use: t.trust_on_first_use,
                })
                .collect(),
            tpm2: l.tpm2.as_ref().map(|t| Tpm2Config {
                pcrs: t.pcrs.clone(),
                bank: if t.bank == crate::plan::PcrBank::Sha1 {
                    PcrBank::Sha1
                } else {
                    PcrBank::Sha256
                },
            }),
            threshold: l.threshold,
        }
    }

    fn count(&self) -> usize {
        self.tang.len() + usize::from(self.tpm2.is_some())
    }
}

/// Where the machine's resources are: the TPM and how patiently to wait for tang.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub tpm: TpmLocation,
    pub tang_retry: Retry,
}

/// A binding made: the JWE and the S256 thumbprints of the tang signing keys trusted.
#[derive(Debug, Clone)]
pub struct Binding {
    pub jwe: Jwe,
    pub thumbprints_used: Vec<String>,
}

/// Binds `secret` to `pin` with the default context (`/dev/tpmrm0`, default retries).
pub fn bind(pin: &Pin, secret: &[u8]) -> Result<Jwe, BindError> {
    Ok(bind_with(&Context::default(), pin, secret)?.jwe)
}

/// Recovers the secret of a clevis JWE (tang, tpm2, sss) with the default context.
pub fn unbind(jwe: &Jwe) -> Result<Zeroizing<Vec<u8>>, BindError> {
    unbind_with(&Context::default(), jwe)
}

/// Binds `secret` to `pin`: one pin's JWE, or an sss JWE over all of them.
pub fn bind_with(ctx: &Context, pin: &Pin, secret: &[u8]) -> Result<Binding, BindError> {
    let n = pin.count();
    if n == 0 {
        return Err(BindError::NoPins);
    }
    let mut thumbprints_used = Vec::new();
    let mut one = |i: usize, plaintext: &[u8]| -> Result<Jwe, BindError> {
        match pin.tang.get(i) {
            Some(t) => {
                let (jwe, thp) = tang::bind(t, plaintext, ctx.tang_retry)?;
                thumbprints_used.push(thp);
                Ok(jwe)
            }
            None => Ok(tpm2::encrypt(
                &ctx.tpm,
                pin.tpm2.as_ref().ok_or(BindError::NoPins)?,
                plaintext,
            )?),
        }
    };
    let jwe = if n == 1 {
        one(0, secret)?
    } else {
        let t = pin.threshold.max(1) as usize;
        let split = sss::split(t, n)?;
        let children = split
            .shares
            .iter()
            .enumerate()
            .map(|(i, share)| one(i, share))
            .collect::<Result<Vec<_>, _>>()?;
        sss::jwe(&split, t, &children, secret)?
    };
    Ok(Binding {
        jwe,
        thumbprints_used,
    })
}

/// Checks, before any disk is touched, that the tang server at `url` advertises a
/// signed key set with the pinned `thumbprint` (any, when `None`: trust on first use).
/// Returns the thumbprint of the signing key found.
pub fn check_tang(ctx: &Context, url: &str, thumbprint: Option<&str>) -> Result<String, BindError> {
    let cfg = TangConfig {
        url: url.to_string(),
        thumbprint: thumbprint.map(String::from),
        trust_on_first_use: thumbprint.is_none(),
    };
    Ok(tang::advertise(&cfg, ctx.tang_retry)?.trusted_thumbprint)
}

/// Checks, before any disk is touched, that the TPM answers: it reads PCR 0 of `bank`.
pub fn check_tpm(ctx: &Context, bank: crate::plan::PcrBank) -> Result<(), BindError> {
    let bank = match bank {
        crate::plan::PcrBank::Sha1 => PcrBank::Sha1,
        crate::plan::PcrBank::Sha256 => PcrBank::Sha256,
    };
    Ok(tpm2::probe(&ctx.tpm, bank)?)
}

/// Recovers the secret of a clevis JWE, dispatching on `clevis.pin` as `clevis decrypt` does.
pub fn unbind_with(ctx: &Context, jwe: &Jwe) -> Result<Zeroizing<Vec<u8>>, BindError> {
    let hdr = jwe.header()?;
    match hdr["clevis"]["pin"].as_str().unwrap_or("") {
        "tang" => Ok(tang::decrypt(jwe, ctx.tang_retry)?),
        "tpm2" => Ok(tpm2::decrypt(&ctx.tpm, jwe)?),
        "sss" => {
            let (t, p, children) = sss::parse(&hdr)?;
            let mut shares = Vec::new();
            let mut failures = Vec::new();
            for child in &children {
                if shares.len() == t {
                    break;
                }
                match unbind_with(ctx, child) {
                    Ok(s) => shares.push(s),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if shares.len() < t {
                return Err(sss::SssError::NotEnough {
                    got: shares.len(),
                    t,
                    failures: failures.join("; "),
                }
                .into());
            }
            let key = sss::combine(&p, &shares)?;
            Ok(jwe.open(&key)?)
        }
        other => Err(BindError::UnknownPin(other.to_string())),
    }
}
