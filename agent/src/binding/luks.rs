//! Storing a binding on a LUKS2 volume the way `clevis luks bind` does: a fresh
//! high-entropy passphrase in its own keyslot (PBKDF2, 1000 iterations: the passphrase
//! has 320 bits, a slow KDF adds nothing), and a `clevis` token whose JWE decrypts to it.
//! The binding is verified by decrypting it before returning; on any failure everything
//! added is removed again, so a volume is never left half-bound.

use super::{jose, BindError, Context, Jwe, Pin};
use libcryptsetup_rs::consts::flags::{CryptActivate, CryptPbkdf};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat};
use libcryptsetup_rs::{CryptDevice, CryptInit, CryptPbkdfType, LibcryptErr, TokenInput};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Why a LUKS binding failed; `rolled_back` says the added keyslot/token were removed.
#[derive(Debug, thiserror::Error)]
pub enum LuksBindError {
    #[error("opening the LUKS2 header of {device}: {source}; is it a LUKS2 volume?")]
    Open {
        device: PathBuf,
        source: LibcryptErr,
    },
    #[error("the existing key does not open any keyslot of {device}; nothing was changed")]
    ExistingKey { device: PathBuf },
    #[error("binding for {device} failed; nothing was changed: {source}")]
    Bind { device: PathBuf, source: BindError },
    #[error("{doing} on {device}: {source}; {cleanup}")]
    Header {
        device: PathBuf,
        doing: &'static str,
        source: LibcryptErr,
        cleanup: &'static str,
    },
    #[error(
        "the new binding of {device} did not verify ({reason}); the keyslot and token added were removed"
    )]
    Verify { device: PathBuf, reason: String },
    #[error(
        "the new binding of {device} did not verify ({reason}) and removing keyslot {keyslot} / token {token} failed too: {cleanup}; remove them by hand (cryptsetup luksKillSlot, token remove)"
    )]
    RollbackFailed {
        device: PathBuf,
        reason: String,
        keyslot: u32,
        token: String,
        cleanup: String,
    },
}

/// What [`bind_luks`] added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOutcome {
    pub keyslot: u32,
    pub token_id: u32,
    /// S256 thumbprints of the tang signing keys trusted (reported for trust-on-first-use).
    pub thumbprints_used: Vec<String>,
}

/// clevis' machine passphrase: base64url of 40 random bytes (54 characters, 320 bits).
fn new_passphrase() -> Result<Zeroizing<String>, jose::JoseError> {
    let mut raw = Zeroizing::new([0u8; 40]);
    jose::random_bytes(&mut raw[..])?;
    Ok(Zeroizing::new(jose::b64(&raw[..])))
}

/// The LUKS2 token clevis reads: one keyslot (as a string) and the flattened JWE.
pub fn clevis_token(keyslot: u32, jwe: &Jwe) -> Value {
    json!({"type": "clevis", "keyslots": [keyslot.to_string()], "jwe": jwe.to_flattened()})
}

/// Binds the LUKS2 volume on `device` to `pin`, with the default context.
pub fn bind_luks(
    device: &Path,
    existing_key: &[u8],
    pin: &Pin,
) -> Result<BindOutcome, LuksBindError> {
    bind_luks_with(
        &Context::default(),
        device,
        Existing::Passphrase(existing_key),
        pin,
    )
}

/// What unlocks the volume today, to authorise the new keyslot.
#[derive(Clone, Copy)]
pub enum Existing<'a> {
    /// A passphrase of an existing keyslot.
    Passphrase(&'a [u8]),
    /// The volume key itself (the agent right after formatting, before any keyslot exists
    /// for a document without a recovery passphrase).
    VolumeKey(&'a [u8]),
}

fn load(device: &Path) -> Result<CryptDevice, LuksBindError> {
    let open = |source| LuksBindError::Open {
        device: device.to_path_buf(),
        source,
    };
    let mut cd = CryptInit::init(device).map_err(open)?;
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(open)?;
    Ok(cd)
}

/// Binds the LUKS2 volume on `device` to `pin`: adds a keyslot for a fresh passphrase and a
/// clevis token holding the passphrase's JWE, then verifies by decrypting the stored token
/// and opening the keyslot with the result. Nothing is left behind on failure.
pub fn bind_luks_with(
    ctx: &Context,
    device: &Path,
    existing: Existing<'_>,
    pin: &Pin,
) -> Result<BindOutcome, LuksBindError> {
    let dev = || device.to_path_buf();
    let mut cd = load(device)?;
    let checked = match existing {
        Existing::Passphrase(p) => cd
            .activate_handle()
            .activate_by_passphrase(None, None, p, CryptActivate::empty())
            .map(drop),
        Existing::VolumeKey(k) => {
            cd.activate_handle()
                .activate_by_volume_key(None, Some(k), CryptActivate::empty())
        }
    };
    checked.map_err(|_| LuksBindError::ExistingKey { device: dev() })?;

    // Network and TPM first: if they fail, the header has not been touched.
    let passphrase = new_passphrase().map_err(|e| LuksBindError::Bind {
        device: dev(),
        source: e.into(),
    })?;
    let binding = super::bind_with(ctx, pin, passphrase.as_bytes()).map_err(|source| {
        LuksBindError::Bind {
            device: dev(),
            source,
        }
    })?;

    let header = |doing, source| LuksBindError::Header {
        device: dev(),
        doing,
        source,
        cleanup: "nothing was changed",
    };
    let pbkdf = CryptPbkdfType {
        type_: CryptKdf::Pbkdf2,
        hash: Some("sha256".into()),
        time_ms: 0,
        iterations: 1000,
        max_memory_kb: 0,
        parallel_threads: 0,
        flags: CryptPbkdf::NO_BENCHMARK,
    };
    cd.settings_handle()
        .set_pbkdf_type(&pbkdf)
        .map_err(|e| header("setting PBKDF2 for the new keyslot", e))?;
    let added = match existing {
        Existing::Passphrase(p) => {
            cd.keyslot_handle()
                .add_by_passphrase(None, p, passphrase.as_bytes())
        }
        Existing::VolumeKey(k) => cd.keyslot_handle().add_by_key(
            None,
            Some(libcryptsetup_rs::Either::Left(k)),
            passphrase.as_bytes(),
            libcryptsetup_rs::consts::flags::CryptVolumeKey::empty(),
        ),
    };
    let keyslot = added.map_err(|e| header("adding a keyslot", e))?;
    let token = cd
        .token_handle()
        .json_set(TokenInput::AddToken(&clevis_token(keyslot, &binding.jwe)));
    let token_id = match token {
        Ok(id) => id,
        Err(source) => {
            let cleanup = match cd.keyslot_handle().destroy(keyslot) {
                Ok(()) => "the keyslot added was removed",
                Err(_) => {
                    "removing the keyslot added failed too: remove it with cryptsetup luksKillSlot"
                }
            };
            return Err(LuksBindError::Header {
                device: dev(),
                doing: "adding the clevis token",
                source,
                cleanup,
            });
        }
    };
    drop(cd);

    match verify(ctx, device, keyslot, token_id, &passphrase) {
        Ok(()) => Ok(BindOutcome {
            keyslot,
            token_id,
            thumbprints_used: binding.thumbprints_used,
        }),
        Err(reason) => {
            let undo = load(device).map_err(|e| e.to_string()).and_then(|mut cd| {
                let t = cd
                    .token_handle()
                    .json_set(TokenInput::RemoveToken(token_id))
                    .map(drop);
                let k = cd.keyslot_handle().destroy(keyslot);
                t.and(k).map_err(|e| e.to_string())
            });
            match undo {
                Ok(()) => Err(LuksBindError::Verify {
                    device: dev(),
                    reason,
                }),
                Err(cleanup) => Err(LuksBindError::RollbackFailed {
                    device: dev(),
                    reason,
                    keyslot,
                    token: token_id.to_string(),
                    cleanup,
                }),
            }
        }
    }
}

/// Re-reads the header, decrypts the token's JWE as the deployed OS will, and checks the
/// result opens exactly the keyslot the token names.
fn verify(
    ctx: &Context,
    device: &Path,
    keyslot: u32,
    token_id: u32,
    passphrase: &str,
) -> Result<(), String> {
    let mut cd = load(device).map_err(|e| e.to_string())?;
    let token = cd
        .token_handle()
        .json_get(token_id)
        .map_err(|e| format!("reading token {token_id} back: {e}"))?;
    if token["keyslots"] != json!([keyslot.to_string()]) {
        return Err(format!(
            "token {token_id} names keyslots {}, not [{keyslot}]",
            token["keyslots"]
        ));
    }
    let jwe = Jwe::from_flattened(&token["jwe"]).map_err(|e| e.to_string())?;
    let recovered =
        super::unbind_with(ctx, &jwe).map_err(|e| format!("decrypting the binding: {e}"))?;
    if recovered.as_slice() != passphrase.as_bytes() {
        return Err("the binding decrypts to something other than the keyslot's passphrase".into());
    }
    cd.activate_handle()
        .activate_by_passphrase(None, Some(keyslot), &recovered, CryptActivate::empty())
        .map_err(|e| format!("the recovered passphrase does not open keyslot {keyslot}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_is_54_base64url_characters() {
        let p = new_passphrase().unwrap();
        assert_eq!(p.len(), 54);
        assert!(p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(*p, *new_passphrase().unwrap());
    }

    #[test]
    fn token_names_one_keyslot_as_a_string() {
        let jwe = Jwe {
            protected: "p".into(),
            iv: "i".into(),
            ciphertext: "c".into(),
            tag: "t".into(),
        };
        let t = clevis_token(3, &jwe);
        assert_eq!(t["keyslots"], json!(["3"]));
        assert_eq!(t["jwe"]["encrypted_key"], json!(""));
    }
}
