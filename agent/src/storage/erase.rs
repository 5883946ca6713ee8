//! The secure wipe (`wipe: secure`): the device's own erase, chosen from what it
//! reports, else a fallback the document allows, proved by sampled reads.
//!
//! Choice, most thorough first: NVMe Sanitize crypto erase, Sanitize block erase,
//! Format NVM with cryptographic erase, Format NVM with user data erase; ATA SECURITY
//! ERASE UNIT (enhanced where offered). Without any, the document's fallbacks in its
//! order: `discard` (where the device discards), `overwrite`. With none allowed the
//! disk is refused, by the preflight check, before any disk is touched.
//!
//! Proof: [`sample::COUNT`] blocks hashed before and read after; an unchanged block
//! that is not all zeros fails the erase, and so does any non-zero block after a
//! method that leaves zeros (discard, overwrite).

pub mod sample;

use crate::blockdev::{self, ata, nvme, BlockError};
use crate::kinds::EraseFallback;
use sample::Samples;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// How a disk was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// NVMe Sanitize, crypto erase (the media encryption key replaced).
    NvmeSanitizeCrypto,
    /// NVMe Sanitize, block erase.
    NvmeSanitizeBlock,
    /// NVMe Format NVM, Secure Erase Settings 2 (cryptographic erase).
    NvmeFormatCrypto,
    /// NVMe Format NVM, Secure Erase Settings 1 (user data erase).
    NvmeFormatUserData,
    /// ATA SECURITY ERASE UNIT, enhanced mode.
    AtaEnhancedSecurityErase,
    /// ATA SECURITY ERASE UNIT, normal mode.
    AtaSecurityErase,
    /// Fallback: the whole disk discarded (BLKDISCARD).
    Discard,
    /// Fallback: the whole disk written with zeros (BLKZEROOUT).
    Overwrite,
}

impl Method {
    /// Whether every block reads zeros afterwards (the sample must then be all zeros).
    pub fn leaves_zeros(self) -> bool {
        matches!(self, Method::Discard | Method::Overwrite)
    }
}

/// What the device said about erasing, as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Claimed {
    /// `nvme` (Identify Controller read), `ata` (IDENTIFY DEVICE read through SG_IO),
    /// or `other` (neither answered).
    pub interface: String,
    /// The erase capabilities it reported, in words (`format nvm`, `sanitize crypto erase`, …).
    pub capabilities: Vec<String>,
    /// Whether the kernel says the device discards (`queue/discard_max_bytes` > 0).
    pub discard: bool,
    /// Whether the kernel says zeroing is offloaded (`queue/write_zeroes_max_bytes` > 0).
    pub write_zeroes: bool,
}

/// A method chosen for a disk, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub method: Method,
    pub claimed: Claimed,
    /// True when the method is one of the document's fallbacks.
    pub fallback: bool,
}

/// What a secure erase did and what proves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseReport {
    pub method: Method,
    /// True when the device offered no secure erase and a document fallback was used.
    pub fallback: bool,
    pub claimed: Claimed,
    /// The sampled reads before and after.
    pub samples: Samples,
    /// Seconds the erase itself took (sampling excluded).
    pub seconds: f64,
}

/// Why a secure erase was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("refusing to securely erase {disk}: the device reports no secure erase ({claimed}) and the document allows {allowed}; add storage.erase.fallback: [overwrite] (or discard) to allow one, or choose another wipe for this disk")]
    Unsupported {
        disk: String,
        claimed: String,
        allowed: String,
    },
    #[error("securely erasing {disk} with {method:?}: {samples} of {count} sampled blocks still hold the data they held before; the erase did not reach the media — try another method (storage.erase.fallback: [overwrite]) or replace the disk")]
    Unchanged {
        disk: String,
        method: Method,
        samples: u64,
        count: u64,
    },
    #[error("securely erasing {disk} with {method:?}: {nonzero} of {count} sampled blocks are not zeros afterwards, which {method:?} must leave; the device does not zero what it discards — allow overwrite instead")]
    NotZero {
        disk: String,
        method: Method,
        nonzero: u64,
        count: u64,
    },
    #[error("refusing to securely erase {disk}: its ATA security erase is {state}, and the document allows {allowed}; {remedy}")]
    AtaBlocked {
        disk: String,
        state: String,
        allowed: String,
        remedy: String,
    },
    #[error("sanitizing {disk}: the controller reports the sanitize failed; it may be left in a restricted state — run `nvme sanitize --sanact=1` (exit failure mode) and try again")]
    SanitizeFailed { disk: String },
    #[error("sanitizing {disk}: not finished after {secs} s; the controller carries on in the background — wait for `nvme sanitize-log` to report completion, then run again")]
    SanitizeTimeout { disk: String, secs: u64 },
    #[error("ATA security erase of {disk} failed: {source}; the disk may keep the temporary user password \"imprint\" — clear it with hdparm --user-master u --security-disable imprint {disk}")]
    AtaErase { disk: String, source: BlockError },
    #[error("securely erasing {disk}: {source}")]
    Io {
        disk: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Block(#[from] BlockError),
}

/// The fallbacks in words (`overwrite`, `discard, then overwrite`), None when empty.
pub fn fallback_words(fallback: &[EraseFallback]) -> Option<String> {
    let w: Vec<&str> = fallback
        .iter()
        .map(|f| match f {
            EraseFallback::Discard => "discard",
            EraseFallback::Overwrite => "overwrite",
        })
        .collect();
    (!w.is_empty()).then(|| w.join(", then "))
}

/// Whether `disk` is an NVMe namespace (its kernel name `nvme…n…`).
fn is_nvme(disk: &Path) -> bool {
    blockdev::is_block_device(disk)
        && blockdev::sysfs_name(disk).is_ok_and(|n| n.starts_with("nvme") && n.contains('n'))
}

/// What the device answered when asked how it erases.
enum Device {
    Nvme(nvme::EraseCaps),
    Ata(ata::Security),
    Other,
}

/// What `disk` claims: Identify Controller of an NVMe namespace, else IDENTIFY DEVICE
/// through SG_IO (which a disk that is not ATA refuses).
fn claims(disk: &Path, f: &File) -> Result<(Claimed, Device), EraseError> {
    let dev = if is_nvme(disk) {
        Device::Nvme(nvme::EraseCaps::parse(&nvme::identify_controller(f)?))
    } else if blockdev::is_block_device(disk) {
        match ata::identify(f) {
            Ok(id) => Device::Ata(ata::Security::parse(&id)),
            Err(_) => Device::Other,
        }
    } else {
        Device::Other
    };
    let (interface, capabilities) = match &dev {
        Device::Nvme(c) => ("nvme", c.words()),
        Device::Ata(s) => ("ata", s.words()),
        Device::Other => (
            "other",
            vec!["answers neither NVMe Identify nor ATA IDENTIFY".into()],
        ),
    };
    let claimed = Claimed {
        interface: interface.into(),
        capabilities,
        discard: blockdev::supports_discard(disk),
        write_zeroes: blockdev::supports_write_zeroes(disk),
    };
    Ok((claimed, dev))
}

/// The most thorough method the device offers and can run now.
fn device_method(dev: &Device) -> Option<Method> {
    match dev {
        Device::Nvme(c) if c.sanitize_crypto => Some(Method::NvmeSanitizeCrypto),
        Device::Nvme(c) if c.sanitize_block => Some(Method::NvmeSanitizeBlock),
        Device::Nvme(c) if c.format && c.format_crypto => Some(Method::NvmeFormatCrypto),
        Device::Nvme(c) if c.format => Some(Method::NvmeFormatUserData),
        Device::Ata(s) if s.supported && !s.enabled && !s.locked && !s.frozen => {
            Some(if s.enhanced_erase {
                Method::AtaEnhancedSecurityErase
            } else {
                Method::AtaSecurityErase
            })
        }
        _ => None,
    }
}

/// Why an ATA device that has the security feature set cannot erase now, and what to do.
fn ata_blocked(s: &ata::Security) -> Option<(&'static str, &'static str)> {
    if !s.supported {
        None
    } else if s.frozen {
        Some(("frozen (the firmware froze it at boot)", "suspend and resume the machine (the disk comes back unfrozen) or power-cycle the disk by hot-plugging it, then run again"))
    } else if s.locked || s.enabled {
        Some((
            "protected by a password the agent does not know",
            "disable it with the disk's password (hdparm --security-disable) and run again",
        ))
    } else {
        None
    }
}

/// Chooses the method for `disk` from what it reports and what `fallback` allows;
/// refuses when neither offers one. Reads only.
pub fn decide(disk: &Path, fallback: &[EraseFallback]) -> Result<Decision, EraseError> {
    let name = disk.display().to_string();
    let f = File::open(disk).map_err(|source| EraseError::Io {
        disk: name.clone(),
        source,
    })?;
    let (claimed, dev) = claims(disk, &f)?;
    if let Some(method) = device_method(&dev) {
        return Ok(Decision {
            method,
            claimed,
            fallback: false,
        });
    }
    let usable = |f: &EraseFallback| match f {
        EraseFallback::Discard => claimed.discard,
        EraseFallback::Overwrite => true,
    };
    if let Some(f) = fallback.iter().find(|f| usable(f)) {
        return Ok(Decision {
            method: match f {
                EraseFallback::Discard => Method::Discard,
                EraseFallback::Overwrite => Method::Overwrite,
            },
            claimed,
            fallback: true,
        });
    }
    let allowed = match fallback_words(fallback) {
        None => "no fallback".into(),
        Some(w) => format!("only {w}, and the device does not discard"),
    };
    Err(match &dev {
        Device::Ata(s) if ata_blocked(s).is_some() => {
            let (state, remedy) = ata_blocked(s).unwrap_or_default();
            EraseError::AtaBlocked {
                disk: name,
                state: state.into(),
                allowed,
                remedy: remedy.into(),
            }
        }
        _ => EraseError::Unsupported {
            disk: name,
            allowed,
            claimed: claimed.capabilities.join(", "),
        },
    })
}

/// Securely erases `disk`: decides the method, samples, erases, samples again and
/// fails unless the samples show the data gone.
pub fn secure_erase(disk: &Path, fallback: &[EraseFallback]) -> Result<EraseReport, EraseError> {
    let d = decide(disk, fallback)?;
    let name = disk.display().to_string();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|source| EraseError::Io {
            disk: name.clone(),
            source,
        })?;
    let size = blockdev::size_bytes(&f)?;
    let before = sample::take(disk, size)?;
    let t0 = Instant::now();
    run(&f, &name, d.method, size)?;
    blockdev::flush(&f)?;
    let seconds = t0.elapsed().as_secs_f64();
    let after = sample::take(disk, size)?;
    let samples = sample::compare(&before, &after);
    verify(&name, d.method, &samples)?;
    Ok(EraseReport {
        method: d.method,
        fallback: d.fallback,
        claimed: d.claimed,
        samples,
        seconds,
    })
}

/// Fails unless `s` shows the data gone (and zeros, where `method` leaves zeros).
pub fn verify(disk: &str, method: Method, s: &Samples) -> Result<(), EraseError> {
    if s.unchanged_data > 0 {
        return Err(EraseError::Unchanged {
            disk: disk.into(),
            method,
            samples: s.unchanged_data,
            count: s.count,
        });
    }
    if method.leaves_zeros() && s.zero < s.count {
        return Err(EraseError::NotZero {
            disk: disk.into(),
            method,
            nonzero: s.count - s.zero,
            count: s.count,
        });
    }
    Ok(())
}

/// The longest a sanitize may take: an hour, plus a second per 100 MB.
fn sanitize_limit(size: u64) -> Duration {
    Duration::from_secs(3600 + size / 100_000_000)
}

/// Runs `method` on the open disk.
fn run(f: &File, name: &str, method: Method, size: u64) -> Result<(), EraseError> {
    let sanitize = |action| -> Result<(), EraseError> {
        nvme::sanitize(f, action)?;
        wait_for_sanitize(f, name, sanitize_limit(size))
    };
    // Format's own timeout: as long as a sanitize may take.
    let format_ms = u32::try_from(sanitize_limit(size).as_millis()).unwrap_or(u32::MAX);
    let format = |ses| -> Result<(), EraseError> {
        let nsid = nvme::namespace_id(f)?;
        let lbaf = nvme::current_lbaf(&nvme::identify_namespace(f, nsid)?);
        nvme::format(f, nsid, lbaf, ses, format_ms)?;
        Ok(())
    };
    match method {
        Method::NvmeSanitizeCrypto => sanitize(nvme::SanitizeAction::CryptoErase),
        Method::NvmeSanitizeBlock => sanitize(nvme::SanitizeAction::BlockErase),
        Method::NvmeFormatCrypto => format(nvme::SecureErase::Crypto),
        Method::NvmeFormatUserData => format(nvme::SecureErase::UserData),
        Method::AtaEnhancedSecurityErase => ata_erase(f, name, true),
        Method::AtaSecurityErase => ata_erase(f, name, false),
        Method::Discard => Ok(blockdev::discard(f, 0, size)?),
        Method::Overwrite => Ok(blockdev::zero_out(f, 0, size)?),
    }
}

/// The temporary user password set for an ATA erase (the erase clears it again).
const ATA_PASSWORD: &[u8] = b"imprint";

/// Sets the temporary password and erases; the time limit is twice what the device
/// says the erase takes, at least two hours.
fn ata_erase(f: &File, name: &str, enhanced: bool) -> Result<(), EraseError> {
    let s = ata::Security::parse(&ata::identify(f)?);
    let minutes = if enhanced {
        s.enhanced_erase_minutes
    } else {
        s.erase_minutes
    };
    let limit_ms = (u64::from(minutes) * 2 * 60_000).max(2 * 3600 * 1000);
    ata::set_password(f, ATA_PASSWORD)?;
    ata::erase_unit(
        f,
        ATA_PASSWORD,
        enhanced,
        u32::try_from(limit_ms).unwrap_or(u32::MAX),
    )
    .map_err(|e| EraseError::AtaErase {
        disk: name.into(),
        source: e,
    })
}

/// Polls the Sanitize Status log once a second until the sanitize ends or `limit` passes.
fn wait_for_sanitize(f: &File, name: &str, limit: Duration) -> Result<(), EraseError> {
    let t0 = Instant::now();
    loop {
        match nvme::sanitize_status(f)? {
            nvme::SanitizeState::Completed | nvme::SanitizeState::CompletedNoDeallocate => {
                return Ok(())
            }
            nvme::SanitizeState::Failed => {
                return Err(EraseError::SanitizeFailed { disk: name.into() })
            }
            _ if t0.elapsed() > limit => {
                return Err(EraseError::SanitizeTimeout {
                    disk: name.into(),
                    secs: limit.as_secs(),
                })
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests;
