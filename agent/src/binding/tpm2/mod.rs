//! The clevis tpm2 pin in pure Rust: a random A256GCM key sealed in the TPM under the
//! clevis primary key (optionally behind a PolicyPCR), and the JWE `clevis encrypt tpm2`
//! writes; and the reverse, as `clevis decrypt tpm2` does it.

pub mod commands;
pub mod ek;
pub mod transport;
pub mod wire;

use super::jose::{self, JoseError, Jwe};
use commands::{CommandError, PrimaryKey, Tpm, ALG_SHA1, ALG_SHA256};
use serde_json::{json, Value};
use sha2::Digest;
pub use transport::{NoTpm, TpmLocation, Transport};
use zeroize::Zeroizing;

/// Why a TPM2 binding or unsealing failed.
#[derive(Debug, thiserror::Error)]
pub enum Tpm2Error {
    #[error(transparent)]
    NoTpm(#[from] NoTpm),
    #[error(
        "the TPM refused to unseal: PCR policy mismatch on bank {bank} PCRs {pcrs} (the boot chain differs from the one sealed to); use another pin or the recovery passphrase"
    )]
    PolicyMismatch { bank: String, pcrs: String },
    #[error("this key was sealed by a different TPM (or the TPM was cleared since): {0}")]
    WrongTpm(CommandError),
    #[error(transparent)]
    Command(CommandError),
    #[error("the JWE is not a clevis tpm2 JWE: {0}")]
    NotTpm2Jwe(String),
    #[error("unsupported {what} {value:?} (supported: {supported})")]
    Unsupported {
        what: &'static str,
        value: String,
        supported: &'static str,
    },
    #[error(transparent)]
    Jose(#[from] JoseError),
}

impl From<CommandError> for Tpm2Error {
    fn from(e: CommandError) -> Self {
        if e.base_rc() == Some(commands::RC_INTEGRITY) {
            Tpm2Error::WrongTpm(e)
        } else {
            Tpm2Error::Command(e)
        }
    }
}

/// A PCR bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PcrBank {
    #[default]
    Sha256,
    Sha1,
}

impl PcrBank {
    /// The name clevis writes in `pcr_bank`.
    pub fn name(self) -> &'static str {
        match self {
            PcrBank::Sha256 => "sha256",
            PcrBank::Sha1 => "sha1",
        }
    }
    fn alg(self) -> u16 {
        match self {
            PcrBank::Sha256 => ALG_SHA256,
            PcrBank::Sha1 => ALG_SHA1,
        }
    }
    fn parse(s: &str) -> Result<PcrBank, Tpm2Error> {
        match s {
            "sha256" => Ok(PcrBank::Sha256),
            "sha1" => Ok(PcrBank::Sha1),
            _ => Err(Tpm2Error::Unsupported {
                what: "PCR bank",
                value: s.into(),
                supported: "sha256, sha1",
            }),
        }
    }
}

/// Opens the TPM at `loc` and reads PCR 0 of `bank`: the TPM is there, answers, and
/// has the bank a seal will use.
pub fn probe(loc: &TpmLocation, bank: PcrBank) -> Result<(), Tpm2Error> {
    let mut tpm = Tpm::new(transport::open(loc)?);
    tpm.pcr_read(bank.alg(), &[0])?;
    Ok(())
}

/// What to seal to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tpm2Config {
    /// PCRs (0–23) whose current values the key is sealed to; empty: no PCR policy.
    pub pcrs: Vec<u8>,
    pub bank: PcrBank,
}

fn pcr_ids(pcrs: &[u8]) -> String {
    let mut p = pcrs.to_vec();
    p.sort_unstable();
    p.dedup();
    p.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// The PolicyPCR digest (SHA-256 policy) for `selection` with PCR values `values`.
pub fn pcr_policy_digest(selection: &[u8], values: &[Vec<u8>]) -> [u8; 32] {
    let mut pcr_digest = sha2::Sha256::new();
    values.iter().for_each(|v| pcr_digest.update(v));
    let mut h = sha2::Sha256::new();
    h.update([0u8; 32]);
    h.update(commands::CC_POLICY_PCR.to_be_bytes());
    h.update(selection);
    h.update(pcr_digest.finalize());
    h.finalize().into()
}

/// Runs `f` with a clevis primary key, flushing it afterwards whatever happens.
fn with_primary<T>(
    tpm: &mut Tpm,
    key: PrimaryKey,
    f: impl FnOnce(&mut Tpm, u32) -> Result<T, Tpm2Error>,
) -> Result<T, Tpm2Error> {
    let primary = tpm.create_primary(&commands::primary_template(key, ALG_SHA256))?;
    let out = f(tpm, primary);
    tpm.flush(primary);
    out
}

/// Seals a fresh content key and encrypts `plaintext` with it: the clevis tpm2 JWE.
pub fn encrypt(loc: &TpmLocation, cfg: &Tpm2Config, plaintext: &[u8]) -> Result<Jwe, Tpm2Error> {
    encrypt_with(&mut Tpm::new(transport::open(loc)?), cfg, plaintext)
}

/// [`encrypt`] through an open [`Tpm`] (any [`Transport`]). Every response the TPM gives
/// is untrusted: anything malformed is an error.
pub fn encrypt_with(tpm: &mut Tpm, cfg: &Tpm2Config, plaintext: &[u8]) -> Result<Jwe, Tpm2Error> {
    let mut cek = Zeroizing::new([0u8; 32]);
    jose::random_bytes(&mut cek[..])?;
    let jwk = jose::oct_jwk(&cek);
    let (private, public) = with_primary(tpm, PrimaryKey::Ecc, |tpm, primary| {
        let policy = if cfg.pcrs.is_empty() {
            None
        } else {
            let sel = commands::pcr_selection(cfg.bank.alg(), &cfg.pcrs);
            let values = tpm.pcr_read(cfg.bank.alg(), &cfg.pcrs)?;
            crate::runner::log::warn(&format!(
                "tpm2: sealing to the current values of {} PCRs {}; they must match at the deployed OS's boot (docs/bindings.md)",
                cfg.bank.name(),
                pcr_ids(&cfg.pcrs)
            ));
            Some(pcr_policy_digest(&sel, &values))
        };
        let template = commands::sealed_template(ALG_SHA256, policy.as_ref().map(|p| &p[..]));
        Ok(tpm.create_sealed(primary, &template, jwk.as_bytes())?)
    })?;
    let mut tpm2 = json!({"hash": "sha256", "key": "ecc", "jwk_pub": jose::b64(&public), "jwk_priv": jose::b64(&private)});
    if !cfg.pcrs.is_empty() {
        tpm2["pcr_bank"] = json!(cfg.bank.name());
        tpm2["pcr_ids"] = json!(pcr_ids(&cfg.pcrs));
    }
    let header = json!({"alg": "dir", "enc": "A256GCM", "clevis": {"pin": "tpm2", "tpm2": tpm2}});
    Ok(Jwe::seal(&header, &cek, plaintext)?)
}

/// Unseals the content key of a clevis tpm2 JWE (ours or clevis') and decrypts it.
/// The header is read in full before the TPM is opened.
pub fn decrypt(loc: &TpmLocation, jwe: &Jwe) -> Result<Zeroizing<Vec<u8>>, Tpm2Error> {
    let sealed = read_header(jwe)?;
    unseal_and_open(&mut Tpm::new(transport::open(loc)?), &sealed, jwe)
}

/// [`decrypt`] through an open [`Tpm`] (any [`Transport`]). Every response the TPM gives
/// is untrusted: anything malformed is an error.
pub fn decrypt_with(tpm: &mut Tpm, jwe: &Jwe) -> Result<Zeroizing<Vec<u8>>, Tpm2Error> {
    unseal_and_open(tpm, &read_header(jwe)?, jwe)
}

/// What the header of a clevis tpm2 JWE says about its sealed key.
struct Sealed {
    key: PrimaryKey,
    public: Vec<u8>,
    private: Vec<u8>,
    bank: PcrBank,
    pcrs: Vec<u8>,
}

/// Reads the sealed key's description from the header of a clevis tpm2 JWE.
fn read_header(jwe: &Jwe) -> Result<Sealed, Tpm2Error> {
    let hdr = jwe.header()?;
    let t = &hdr["clevis"]["tpm2"];
    let field = |k: &str| {
        t[k].as_str()
            .ok_or_else(|| Tpm2Error::NotTpm2Jwe(format!("clevis.tpm2.{k} missing")))
    };
    if field("hash")? != "sha256" {
        return Err(Tpm2Error::Unsupported {
            what: "clevis.tpm2.hash",
            value: field("hash")?.into(),
            supported: "sha256",
        });
    }
    let key = match field("key")? {
        "ecc" => PrimaryKey::Ecc,
        "rsa" => PrimaryKey::Rsa,
        other => {
            return Err(Tpm2Error::Unsupported {
                what: "clevis.tpm2.key",
                value: other.into(),
                supported: "ecc, rsa",
            });
        }
    };
    let public = jose::unb64(field("jwk_pub")?, "clevis.tpm2.jwk_pub")?;
    let private = jose::unb64(field("jwk_priv")?, "clevis.tpm2.jwk_priv")?;
    let pcrs: Vec<u8> = match &t["pcr_ids"] {
        Value::Null => Vec::new(),
        Value::String(s) if s.trim().is_empty() => Vec::new(),
        Value::String(s) => s
            .split(',')
            .map(|p| p.trim().parse::<u8>().ok().filter(|n| *n < 24))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                Tpm2Error::NotTpm2Jwe(format!("clevis.tpm2.pcr_ids {s:?} is not a PCR list"))
            })?,
        other => {
            return Err(Tpm2Error::NotTpm2Jwe(format!(
                "clevis.tpm2.pcr_ids is {other}, expected a string"
            )));
        }
    };
    let bank = if pcrs.is_empty() {
        PcrBank::Sha256
    } else {
        PcrBank::parse(field("pcr_bank")?)?
    };
    Ok(Sealed {
        key,
        public,
        private,
        bank,
        pcrs,
    })
}

/// Loads the sealed object under a fresh primary key, unseals the content key (through
/// the PCR policy, if any) and opens the JWE with it.
fn unseal_and_open(tpm: &mut Tpm, s: &Sealed, jwe: &Jwe) -> Result<Zeroizing<Vec<u8>>, Tpm2Error> {
    let jwk = with_primary(tpm, s.key, |tpm, primary| {
        let item = tpm.load(primary, &s.private, &s.public)?;
        let out = unseal_item(tpm, item, s.bank, &s.pcrs);
        tpm.flush(item);
        out
    })?;
    let cek = jose::oct_key(&jwk)?;
    Ok(jwe.open(&cek)?)
}

fn unseal_item(
    tpm: &mut Tpm,
    item: u32,
    bank: PcrBank,
    pcrs: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Tpm2Error> {
    if pcrs.is_empty() {
        return Ok(tpm.unseal(item, wire::RS_PW)?);
    }
    let mut nonce = [0u8; 32];
    jose::random_bytes(&mut nonce)?;
    let session = tpm.start_policy_session(ALG_SHA256, &nonce)?;
    let out = tpm
        .policy_pcr(session, &commands::pcr_selection(bank.alg(), pcrs))
        .and_then(|()| tpm.unseal(item, session));
    tpm.flush(session);
    out.map_err(|e| match e.base_rc() {
        Some(commands::RC_POLICY_FAIL) => Tpm2Error::PolicyMismatch {
            bank: bank.name().into(),
            pcrs: pcr_ids(pcrs),
        },
        _ => e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_ids_are_sorted_comma_separated() {
        assert_eq!(pcr_ids(&[7, 0, 7]), "0,7");
        assert_eq!(pcr_ids(&[]), "");
    }

    #[test]
    fn policy_digest_follows_the_policy_pcr_formula() {
        // Recomputed independently: H(0^32 ‖ CC ‖ selection ‖ H(values)).
        let sel = commands::pcr_selection(ALG_SHA256, &[7]);
        let values = vec![vec![0u8; 32]];
        let inner = sha2::Sha256::digest([0u8; 32]);
        let mut buf = vec![0u8; 32];
        buf.extend_from_slice(&[0, 0, 1, 0x7F]);
        buf.extend_from_slice(&hex::decode("00000001000b03800000").unwrap());
        buf.extend_from_slice(&inner);
        assert_eq!(
            pcr_policy_digest(&sel, &values),
            <[u8; 32]>::from(sha2::Sha256::digest(&buf))
        );
    }

    #[test]
    fn missing_device_is_a_no_tpm_error() {
        let dir = tempfile::tempdir().unwrap();
        let loc = TpmLocation::Device(dir.path().join("tpmrm0"));
        let e = encrypt(&loc, &Tpm2Config::default(), b"x").unwrap_err();
        assert!(matches!(e, Tpm2Error::NoTpm(_)), "{e}");
        assert!(e.to_string().contains("tpmrm0"), "{e}");
    }
}
