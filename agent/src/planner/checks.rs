//! What the run checks before its first step: everything the steps will need from
//! outside the disks (the image's server, tang servers, the TPM, the firmware's
//! variables) and the configdrive's fit, derived from the steps themselves so nothing the steps use goes unchecked.

use crate::plan::{Check, Step};

/// The checks `steps` need, in a stable order, each once.
pub(super) fn for_steps(steps: &[Step]) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut add = |c: Check| {
        if !checks.contains(&c) {
            checks.push(c);
        }
    };
    for s in steps {
        match s {
            Step::WriteImage(i) => {
                add(Check::Image {
                    urls: i.urls.clone(),
                });
                if let Some(s) = &i.signature {
                    add(Check::Signature { url: s.url.clone() });
                }
                // A container image's signature is checked with its manifest and layers.
                let container = i.format == crate::kinds::ImageFormat::Rootfs
                    && i.urls[0].starts_with(crate::oci::SCHEME);
                if let Some(s) = i.registry_signature.as_ref().filter(|_| !container) {
                    add(Check::RegistrySignature {
                        url: i.urls[0].clone(),
                        lookaside: s.lookaside.clone(),
                    });
                }
            }
            Step::Luks(l) => {
                for t in &l.tang {
                    add(Check::Tang {
                        url: t.url.clone(),
                        thumbprint: t.thumbprint.clone(),
                    });
                }
                if let Some(t) = &l.tpm2 {
                    add(Check::Tpm { bank: t.bank });
                }
            }
            // A copy on a second disk holds the same files in the same size.
            Step::Configdrive(c) if !c.copy => add(Check::Configdrive {
                disk: c.disk.clone(),
                size_bytes: c.size_bytes,
            }),
            // The device's erase method (or an allowed fallback) is known before any disk is touched.
            Step::Wipe {
                disk,
                path,
                policy: crate::kinds::WipePolicy::Secure,
                fallback,
            } => add(Check::Erase {
                disk: disk.clone(),
                path: path.clone(),
                fallback: fallback.clone(),
            }),
            Step::BootEntries(b) => add(Check::Efivars {
                efivars: b.efivars.clone(),
            }),
            _ => {}
        }
    }
    checks
}
