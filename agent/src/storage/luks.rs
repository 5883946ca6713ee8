//! LUKS2 volumes through libcryptsetup: format with a volume key the agent generates,
//! a keyslot for the recovery passphrase, open for the agent's own use, close.
//!
//! Key derivation: argon2id with the memory cost capped at [`MAX_MEMORY_KIB`] (256 MiB)
//! and 4 lanes, iteration time calibrated to 2 s on this machine. The cap is what a
//! 512 MiB ramdisk and the deployed initramfs on a small host can afford while unlocking;
//! libcryptsetup lowers it further when less memory is free.
//!
//! The volume key stays in a zeroizing buffer inside [`OpenVolume`] for the life of the
//! run: tang and TPM2 bindings add their keyslots from it (see [`bind_pins`]).

use crate::plan::LuksPlan;
use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat};
use libcryptsetup_rs::{CryptInit, CryptPbkdfType, Either, LibcryptErr};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Upper bound of argon2id's memory cost, in KiB.
pub const MAX_MEMORY_KIB: u32 = 256 * 1024;
/// Target unlock time on the formatting machine.
pub const ITER_TIME_MS: u32 = 2000;

/// What [`format`] made (and [`bind_pins`] added), for the step's report. Never a key
/// or a passphrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Formatted {
    pub name: String,
    /// The formatted device.
    pub device: PathBuf,
    /// `/dev/mapper/<name>`.
    pub mapping: PathBuf,
    pub uuid: String,
    pub cipher: String,
    pub key_size: u32,
    pub pbkdf: Pbkdf,
    /// Keyslots added while formatting (the recovery passphrase's).
    pub keyslots: Vec<Keyslot>,
    /// Tang/TPM2 bindings, one clevis token and keyslot each.
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

/// Key derivation settings of the keyslots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pbkdf {
    /// Always `argon2id`.
    #[serde(rename = "type")]
    pub kind: String,
    pub max_memory_kib: u32,
    pub time_ms: u32,
}

/// One keyslot added while formatting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Keyslot {
    pub slot: u32,
    /// What unlocks it: `recovery-passphrase`.
    pub kind: String,
}

/// A verified binding to the volume's pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Binding {
    /// `tang <url>` and `tpm2`, in the document's order.
    pub pins: Vec<String>,
    pub threshold: u32,
    pub keyslot: u32,
    /// The clevis token's id in the LUKS2 header.
    pub token: u32,
    pub tang_thumbprints_used: Vec<String>,
    /// The token was decrypted back before the step ended.
    pub verified: bool,
}

/// Why a LUKS operation failed. Never carries a passphrase or key.
#[derive(Debug, thiserror::Error)]
pub enum LuksError {
    #[error("{what} {}: {cause}", device.display())]
    Crypt {
        what: &'static str,
        device: PathBuf,
        cause: String,
    },
    #[error("cipher {0:?} is not of the form cipher-mode (e.g. aes-xts-plain64)")]
    Cipher(String),
    #[error("LUKS volume {0} would have no keyslot: give a recovery_passphrase or tang/tpm2 pins")]
    NoKeyslot(String),
    #[error("reading random bytes for the volume key: {0}")]
    Random(std::io::Error),
    #[error("LUKS volume {name}: binding to {pins}: {source}")]
    Binding {
        name: String,
        pins: String,
        // Boxed: the binding error is large, and every LuksError result would carry it.
        source: Box<crate::binding::luks::LuksBindError>,
    },
}

/// An open LUKS volume: its mapping and the volume key (zeroized on drop).
pub struct OpenVolume {
    pub name: String,
    pub device: PathBuf,
    /// `/dev/mapper/<name>`.
    pub path: PathBuf,
    volume_key: Zeroizing<Vec<u8>>,
}

impl OpenVolume {
    /// The volume key, for adding keyslots (tang/TPM2 bindings).
    pub fn volume_key(&self) -> &[u8] {
        &self.volume_key
    }
}

impl std::fmt::Debug for OpenVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenVolume")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn crypt<'a>(what: &'static str, device: &'a Path) -> impl Fn(LibcryptErr) -> LuksError + 'a {
    move |e| LuksError::Crypt {
        what,
        device: device.to_path_buf(),
        cause: e.to_string(),
    }
}

/// Splits `aes-xts-plain64` into (`aes`, `xts-plain64`).
pub fn split_cipher(c: &str) -> Result<(&str, &str), LuksError> {
    match c.split_once('-') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a, b)),
        _ => Err(LuksError::Cipher(c.into())),
    }
}

/// The pins `plan` asks for, in words (for messages).
pub fn pins(plan: &LuksPlan) -> Vec<String> {
    let mut p: Vec<String> = plan
        .tang
        .iter()
        .map(|t| format!("tang {}", t.url))
        .collect();
    if plan.tpm2.is_some() {
        p.push("tpm2".into());
    }
    p
}

/// Formats `plan.device` as LUKS2, adds the recovery passphrase's keyslot (slot 0), and
/// opens it as `/dev/mapper/<name>` when `open` (false: format only, e.g. on a file).
pub fn format(plan: &LuksPlan, open: bool) -> Result<(OpenVolume, Formatted), LuksError> {
    let dev = &plan.device;
    let (cipher, mode) = split_cipher(&plan.cipher)?;
    if plan.recovery_passphrase.is_none() && (plan.tang.is_empty() && plan.tpm2.is_none()) {
        return Err(LuksError::NoKeyslot(plan.name.clone()));
    }
    let mut key = Zeroizing::new(vec![0u8; (plan.key_size / 8) as usize]);
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(LuksError::Random)?;
    let uuid = uuid::Uuid::parse_str(&plan.uuid).map_err(|e| LuksError::Crypt {
        what: "parsing the planned UUID of",
        device: dev.clone(),
        cause: e.to_string(),
    })?;
    let mut cd = CryptInit::init(dev).map_err(crypt("opening", dev))?;
    let pbkdf = CryptPbkdfType {
        type_: CryptKdf::Argon2Id,
        hash: Some("sha256".into()),
        time_ms: ITER_TIME_MS,
        iterations: 0,
        max_memory_kb: MAX_MEMORY_KIB,
        parallel_threads: 4,
        flags: CryptPbkdf::empty(),
    };
    cd.settings_handle()
        .set_pbkdf_type(&pbkdf)
        .map_err(crypt("setting argon2id for", dev))?;
    cd.context_handle()
        .format::<()>(
            EncryptionFormat::Luks2,
            (cipher, mode),
            Some(uuid),
            Either::Left(&key),
            None,
        )
        .map_err(crypt("formatting LUKS2 on", dev))?;
    if let Some(label) = &plan.label {
        cd.context_handle()
            .set_label(Some(label), None)
            .map_err(crypt("labelling", dev))?;
    }
    let mut keyslots = Vec::new();
    if let Some(pass) = &plan.recovery_passphrase {
        let slot = cd
            .keyslot_handle()
            .add_by_key(
                None,
                Some(Either::Left(&key)),
                pass.expose().as_bytes(),
                CryptVolumeKey::empty(),
            )
            .map_err(crypt("adding the recovery passphrase keyslot to", dev))?;
        keyslots.push(Keyslot {
            slot,
            kind: "recovery-passphrase".into(),
        });
    }
    if open {
        cd.activate_handle()
            .activate_by_volume_key(Some(&plan.name), Some(&key), CryptActivate::empty())
            .map_err(crypt("opening", dev))?;
        crate::blockdev::wait_for_node(&plan.path, std::time::Duration::from_secs(10)).map_err(
            |e| LuksError::Crypt {
                what: "waiting for the mapping of",
                device: dev.clone(),
                cause: e.to_string(),
            },
        )?;
    }
    let vol = OpenVolume {
        name: plan.name.clone(),
        device: dev.clone(),
        path: plan.path.clone(),
        volume_key: key,
    };
    let out = Formatted {
        name: plan.name.clone(),
        device: dev.clone(),
        mapping: plan.path.clone(),
        uuid: plan.uuid.clone(),
        cipher: plan.cipher.clone(),
        key_size: plan.key_size,
        pbkdf: Pbkdf {
            kind: "argon2id".into(),
            max_memory_kib: MAX_MEMORY_KIB,
            time_ms: ITER_TIME_MS,
        },
        keyslots,
        bindings: Vec::new(),
    };
    Ok((vol, out))
}

/// Binds the volume to its tang/TPM2 pins (with the document's threshold, as one clevis
/// token and keyslot), authorised by the open volume's key, and verified by decrypting
/// the token before this returns; nothing is half-bound on failure.
pub fn bind_pins(vol: &OpenVolume, plan: &LuksPlan) -> Result<Vec<Binding>, LuksError> {
    let p = pins(plan);
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let pin = crate::binding::Pin::from_plan(plan);
    let ctx = crate::binding::Context::default();
    let existing = crate::binding::luks::Existing::VolumeKey(vol.volume_key());
    let out = crate::binding::luks::bind_luks_with(&ctx, &plan.device, existing, &pin).map_err(
        |source| LuksError::Binding {
            name: plan.name.clone(),
            pins: p.join(", "),
            source: Box::new(source),
        },
    )?;
    Ok(vec![Binding {
        pins: p,
        threshold: pin.threshold,
        keyslot: out.keyslot,
        token: out.token_id,
        tang_thumbprints_used: out.thumbprints_used,
        verified: true,
    }])
}

/// Closes the mapping `name`.
pub fn close(name: &str) -> Result<(), LuksError> {
    let dev = PathBuf::from(format!("/dev/mapper/{name}"));
    let mut cd = CryptInit::init_by_name_and_header(name, None)
        .map_err(crypt("looking up the mapping", &dev))?;
    cd.activate_handle()
        .deactivate(name, CryptDeactivate::empty())
        .map_err(crypt("closing", &dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn plan(device: PathBuf) -> LuksPlan {
        LuksPlan {
            name: "luks-test".into(),
            device,
            path: "/dev/mapper/luks-test".into(),
            cipher: "aes-xts-plain64".into(),
            key_size: 512,
            label: Some("cryptroot".into()),
            uuid: "c7817eb5-7e5c-4f0c-9d6e-837def918b32".into(),
            tang: Vec::new(),
            tpm2: None,
            threshold: 1,
            recovery_passphrase: Some(Secret::new("correct horse battery")),
        }
    }

    #[test]
    fn cipher_is_split_at_the_first_dash() {
        assert_eq!(
            split_cipher("aes-xts-plain64").unwrap(),
            ("aes", "xts-plain64")
        );
        assert!(split_cipher("aes").is_err());
    }

    /// Debian's cryptsetup checks the result: LUKS2, the planned UUID and label, argon2id
    /// within the memory cap, and the passphrase opens keyslot 0.
    #[test]
    fn formatted_volume_is_luks2_with_a_bounded_argon2id_passphrase_slot() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("luks.img");
        std::fs::File::create(&f)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let (vol, out) = format(&plan(f.clone()), false).unwrap();
        assert_eq!(vol.volume_key().len(), 64);
        assert_eq!(out.keyslots[0].slot, 0);
        assert!(!serde_json::to_string(&out)
            .unwrap()
            .contains("correct horse"));
        let dump = std::process::Command::new("cryptsetup")
            .arg("luksDump")
            .arg(&f)
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&dump.stdout);
        assert!(dump.contains("Version:       \t2"), "{dump}");
        assert!(
            dump.contains("c7817eb5-7e5c-4f0c-9d6e-837def918b32"),
            "{dump}"
        );
        assert!(dump.contains("cryptroot"), "{dump}");
        assert!(
            dump.contains("argon2id") && dump.contains("aes-xts-plain64"),
            "{dump}"
        );
        let mem: u64 = dump
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Memory:")
                    .map(|m| m.trim().parse().unwrap())
            })
            .expect("a memory cost");
        assert!(mem <= MAX_MEMORY_KIB as u64, "{mem}");
        let mut child = std::process::Command::new("cryptsetup")
            .args([
                "open",
                "--test-passphrase",
                "--key-slot",
                "0",
                "--key-file",
                "-",
            ])
            .arg(&f)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"correct horse battery")
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "the recovery passphrase opens keyslot 0"
        );
    }

    #[test]
    fn binding_errors_name_the_volume_and_its_pins() {
        let mut p = plan("/nonexistent".into());
        p.tang.push(crate::plan::TangPin {
            url: "http://10.0.2.2:7500".into(),
            thumbprint: None,
            trust_on_first_use: false,
        });
        let vol = OpenVolume {
            name: p.name.clone(),
            device: p.device.clone(),
            path: p.path.clone(),
            volume_key: Zeroizing::new(vec![0; 64]),
        };
        let e = bind_pins(&vol, &p).unwrap_err().to_string();
        assert!(e.contains("tang http://10.0.2.2:7500"), "{e}");
    }
}
