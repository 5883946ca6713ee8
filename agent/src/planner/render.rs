//! The plan as an operator reads it before anything is destroyed.

use crate::plan::*;
use crate::units::Bytes;
use std::fmt::Write;

fn type_name(guid: &str) -> &str {
    crate::config::PARTITION_TYPES
        .iter()
        .find(|(_, g)| g.eq_ignore_ascii_case(guid))
        .map(|(a, _)| *a)
        .unwrap_or(guid)
}

fn paths(p: &[std::path::PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `RAID10 /dev/md/md-root from …, usable 9.7 GiB (near-2, chunk 512KiB, metadata 1.2, UUID …)`.
fn write_raid(o: &mut String, r: &RaidPlan) -> std::fmt::Result {
    let mut how = Vec::new();
    if r.layout.as_deref() == Some("n2") {
        how.push("near-2".to_string());
    }
    if let Some(c) = r.chunk_bytes {
        how.push(format!("chunk {}", Bytes(c)));
    }
    how.push(format!("metadata {}", r.metadata));
    how.push(format!("UUID {}", r.uuid));
    writeln!(
        o,
        "{} {} from {}, usable {} ({})",
        r.level,
        r.path.display(),
        paths(&r.members),
        Bytes(r.size_bytes).human(),
        how.join(", ")
    )
}

impl Plan {
    /// A readable plan: the disks chosen and why, what will be destroyed, every step with
    /// its devices, sectors, sizes and UUIDs. Secrets are never shown.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = self.write_text(&mut o);
        o
    }

    fn write_text(&self, o: &mut String) -> std::fmt::Result {
        writeln!(
            o,
            "Plan for host {} (instance id {})",
            self.host.hostname, self.host.instance_id
        )?;
        writeln!(o, "\nDisks")?;
        for d in &self.disks {
            let mut ident = Vec::new();
            if let Some(m) = &d.model {
                ident.push(format!("model {m}"));
            }
            if let Some(s) = &d.serial {
                ident.push(format!("serial {s}"));
            }
            writeln!(
                o,
                "  {}: {}  {}, {}-byte sectors{}",
                d.name,
                d.path.display(),
                Bytes(d.size_bytes).human(),
                d.logical_sector,
                if ident.is_empty() {
                    String::new()
                } else {
                    format!(", {}", ident.join(", "))
                }
            )?;
            writeln!(o, "     chosen because {}", d.chosen_because)?;
            if d.destroys.is_empty() {
                writeln!(o, "     WILL BE DESTROYED: the whole disk (no signatures or partitions found on it)")?;
            } else {
                writeln!(o, "     WILL BE DESTROYED:")?;
                for x in &d.destroys {
                    writeln!(o, "       - {x}")?;
                }
            }
        }
        if !self.checks.is_empty() {
            writeln!(o, "\nChecked first, before any disk is touched")?;
            for c in &self.checks {
                writeln!(o, "  - {}", c.describe())?;
            }
        }
        writeln!(o, "\nSteps")?;
        for (i, s) in self.steps.iter().enumerate() {
            write!(o, "  {:>2}. {:<22} ", i + 1, s.name())?;
            self.write_step(o, s)?;
        }
        writeln!(o)?;
        match &self.report {
            Some(r) => writeln!(
                o,
                "Report: {} (token {}), progress every {}s",
                r.url,
                if r.token.is_some() {
                    "<redacted>"
                } else {
                    "none"
                },
                r.heartbeat_secs
            )?,
            None => writeln!(o, "Report: none")?,
        }
        if let Some(r) = &self.report {
            let hooks = [("a success, GET", &r.built), ("a failure, POST", &r.failed)];
            for (when, url) in hooks {
                if let Some(u) = url {
                    writeln!(o, "After {when} {}", crate::plan::redact_query(u))?;
                }
            }
        }
        if !self.kernel_args.is_empty() {
            writeln!(o, "Kernel arguments: {}", self.kernel_args.join(" "))?;
        }
        let finish = match self.finish {
            Finish::Reboot => "reboot",
            Finish::Poweroff => "poweroff",
            Finish::Kexec => "kexec",
            Finish::None => "none",
        };
        writeln!(o, "Finish: {finish}")
    }

    fn write_step(&self, o: &mut String, s: &Step) -> std::fmt::Result {
        match s {
            Step::Wipe {
                path,
                policy,
                fallback,
                ..
            } => {
                let how = match policy {
                    WipePolicy::Signatures => "erase every signature",
                    WipePolicy::Discard => "erase every signature, then discard the whole disk",
                    WipePolicy::Zero => "erase every signature, then zero the whole disk",
                    WipePolicy::Secure => "securely erase the whole disk",
                };
                writeln!(o, "{how} on {}", path.display())?;
                if *policy == WipePolicy::Secure {
                    writeln!(
                        o,
                        "  method: decided at run time from what the device reports (NVMe sanitize or format, ATA security erase); fallback: {}; 64 sampled reads before and after prove it",
                        crate::storage::erase::fallback_words(fallback)
                            .unwrap_or_else(|| "none, a device without one is refused".into())
                    )?;
                }
                Ok(())
            }
            Step::Partition {
                path,
                logical_sector,
                partitions,
                ..
            } => write_partition(o, path, *logical_sector, partitions),
            Step::AppendPartitions(a) => write_append(o, a),
            Step::Raid(r) => write_raid(o, r),
            Step::Luks(l) => write_luks(o, l),
            Step::Lvm(v) => write_lvm(o, v),
            Step::Mkfs(m) => writeln!(
                o,
                "{} on {}{}{} (UUID {})",
                m.fstype,
                m.device.display(),
                m.label
                    .as_ref()
                    .map(|l| format!(" labelled {l:?}"))
                    .unwrap_or_default(),
                m.mount
                    .as_ref()
                    .map(|p| format!(", mounted at {p}"))
                    .unwrap_or_default(),
                m.uuid
            ),
            Step::Mount(m) => writeln!(
                o,
                "{} at {} ({}{})",
                m.device.display(),
                m.mountpoint,
                m.fstype,
                if m.options.is_empty() {
                    String::new()
                } else {
                    format!(", {}", m.options.join(","))
                }
            ),
            Step::WriteImage(i) => write_image(o, i),
            Step::Finalize(f) => write_finalize(o, f),
            Step::Configdrive(c) => write_configdrive(o, c),
            Step::BootEntries(b) => write_boot_entries(o, b),
        }
    }
}

fn write_partition(
    o: &mut String,
    path: &std::path::Path,
    logical_sector: u64,
    partitions: &[PartitionPlan],
) -> std::fmt::Result {
    writeln!(
        o,
        "new GPT on {} ({logical_sector}-byte sectors)",
        path.display()
    )?;
    writeln!(
        o,
        "        {:>3}  {:<14} {:<10} {:>12} {:>12} {:>10}  device",
        "#", "name", "type", "start", "end", "size"
    )?;
    for p in partitions {
        let size = Bytes((p.last_lba + 1 - p.first_lba) * logical_sector);
        writeln!(
            o,
            "        {:>3}  {:<14} {:<10} {:>12} {:>12} {:>10}  {}",
            p.number,
            p.name,
            type_name(&p.type_guid),
            p.first_lba,
            p.last_lba,
            size.human(),
            p.path.display()
        )?;
    }
    Ok(())
}

fn write_append(o: &mut String, a: &AppendPlan) -> std::fmt::Result {
    writeln!(
        o,
        "add to the image's GPT on {}, after its last partition:",
        a.path.display()
    )?;
    for p in &a.partitions {
        let size = p
            .size_bytes
            .map(|b| Bytes(b).human())
            .unwrap_or_else(|| "the rest".into());
        writeln!(
            o,
            "        {:<14} {:<10} {:>10}  {} (numbered after the image's)",
            p.name,
            type_name(&p.type_guid),
            size,
            p.node.display()
        )?;
    }
    if a.reserve_bytes > 0 {
        writeln!(
            o,
            "        keeping {} at the end for the configdrive",
            Bytes(a.reserve_bytes).human()
        )?;
    }
    Ok(())
}

fn write_luks(o: &mut String, l: &LuksPlan) -> std::fmt::Result {
    let mut pins: Vec<String> = l
        .tang
        .iter()
        .map(|t| match (&t.thumbprint, t.trust_on_first_use) {
            (Some(tp), _) => format!("tang {} (key {tp})", t.url),
            (None, _) => format!("tang {} (key trusted on first use)", t.url),
        })
        .collect();
    if let Some(t) = &l.tpm2 {
        pins.push(format!("tpm2 (PCRs {:?}, {})", t.pcrs, t.bank));
    }
    writeln!(
        o,
        "LUKS2 on {} -> {} ({}, {}-bit key, UUID {})",
        l.device.display(),
        l.path.display(),
        l.cipher,
        l.key_size,
        l.uuid
    )?;
    if !pins.is_empty() {
        writeln!(
            o,
            "        unlocked by {} of: {}",
            l.threshold,
            pins.join("; ")
        )?;
    }
    if l.recovery_passphrase.is_some() {
        writeln!(o, "        plus a recovery passphrase (not shown)")?;
    }
    Ok(())
}

fn write_lvm(o: &mut String, v: &LvmPlan) -> std::fmt::Result {
    writeln!(o, "volume group {} on {}", v.vg, paths(&v.pvs))?;
    for lv in &v.volumes {
        let size = lv
            .size_bytes
            .map(|b| Bytes(b).to_string())
            .unwrap_or_else(|| "the rest".into());
        writeln!(
            o,
            "        {:<16} {:>10}  {}",
            lv.name,
            size,
            lv.path.display()
        )?;
    }
    Ok(())
}

fn write_image(o: &mut String, i: &ImagePlan) -> std::fmt::Result {
    let fmt = match i.format {
        ImageFormat::Disk => "whole-disk image",
        ImageFormat::Rootfs => "root filesystem archive, extracted",
        ImageFormat::Filesystem => "filesystem image",
    };
    writeln!(
        o,
        "{fmt} onto {} (disk {})",
        i.target_path.display(),
        i.target_disk
    )?;
    for (n, u) in i.urls.iter().enumerate() {
        writeln!(o, "        {} {u}", if n == 0 { "from" } else { "  or" })?;
    }
    if !i.stores.is_empty() || crate::image::chunked::is_index_url(&i.urls[0]) {
        writeln!(
            o,
            "        a casync index: chunks already on the disk are kept, the rest fetched"
        )?;
        let default = [crate::image::chunked::default_store(&i.urls[0])];
        let stores = if i.stores.is_empty() {
            &default[..]
        } else {
            &i.stores[..]
        };
        for s in stores {
            writeln!(o, "        chunks from {s}")?;
        }
    }
    if let Some(d) = &i.digest {
        let alg = match d.algorithm {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        };
        writeln!(o, "        verified by {alg} {}", d.hex)?;
    }
    if let Some(s) = &i.signature {
        let by = if s.keys.is_empty() {
            "a key of the trust root".to_string()
        } else {
            format!("one of the {} keys the document lists", s.keys.len())
        };
        writeln!(o, "        signed by {by}: {}", s.url)?;
    }
    if let Some(s) = &i.registry_signature {
        let by = if s.keys.is_empty() {
            "a key of the trust root".to_string()
        } else {
            format!("one of the {} keys the document lists", s.keys.len())
        };
        writeln!(
            o,
            "        manifest signed by {by} (lookaside {})",
            s.lookaside
        )?;
    }
    match &i.pin {
        crate::plan::ImagePin::Manifest { digest } => writeln!(
            o,
            "        pinned by manifest {digest}: the layer it names is the digest checked"
        )?,
        crate::plan::ImagePin::RegistrySignature => writeln!(
            o,
            "        pinned by the manifest digest its registry signature signs"
        )?,
        crate::plan::ImagePin::Insecure => writeln!(
            o,
            "        INSECURE: nothing pins this tag (--insecure); the manifest it names now is taken"
        )?,
        crate::plan::ImagePin::Digest | crate::plan::ImagePin::Signature => {}
    }
    if i.grow {
        writeln!(
            o,
            "        then the last partition grows to the end of the disk"
        )?;
    }
    Ok(())
}

fn write_finalize(o: &mut String, f: &FinalizePlan) -> std::fmt::Result {
    writeln!(o, "make the extracted system boot")?;
    for l in &f.fstab {
        writeln!(o, "        fstab:    {l}")?;
    }
    for l in &f.crypttab {
        writeln!(o, "        crypttab: {l}")?;
    }
    for l in &f.mdadm {
        writeln!(o, "        mdadm:    {l}")?;
    }
    if !f.boot_disks.is_empty() {
        writeln!(o, "        boot loader on {}", paths(&f.boot_disks))?;
    }
    if !f.esp_copies.is_empty() {
        writeln!(o, "        ESP copied to {}", paths(&f.esp_copies))?;
    }
    for c in &f.commands {
        writeln!(o, "        run: {}", c.join(" "))?;
    }
    Ok(())
}

fn write_boot_entries(o: &mut String, b: &BootEntriesPlan) -> std::fmt::Result {
    writeln!(
        o,
        "in UEFI mode, a boot entry first in BootOrder for each ESP's loader (shim, else GRUB, else \\EFI\\BOOT\\BOOTX64.EFI)"
    )?;
    for d in &b.disks {
        writeln!(
            o,
            "        on disk {} ({}), replacing imprint's earlier entries for \"{}\"",
            d.disk,
            d.path.display(),
            d.identity
        )?;
    }
    writeln!(
        o,
        "        skipped when the machine did not boot in UEFI mode; off with boot.uefi_entries: false"
    )
}

fn write_configdrive(o: &mut String, c: &ConfigdrivePlan) -> std::fmt::Result {
    let fmt = match c.format {
        ConfigdriveFormat::Nocloud => "NoCloud (cidata)",
        ConfigdriveFormat::Config2 => "OpenStack config-2",
    };
    let place = match &c.partition {
        Some(p) => format!("partition {}", p.display()),
        None => "a new partition after the image's".to_string(),
    };
    writeln!(
        o,
        "{fmt}, {}, on disk {} ({}) in {place}",
        Bytes(c.size_bytes).human(),
        c.disk,
        c.disk_path.display()
    )?;
    let mut files = vec!["meta-data"];
    if c.user_data.is_some() {
        files.push("user-data");
    }
    if c.network_config.is_some() {
        files.push("network-config");
    }
    if c.vendor_data.is_some() {
        files.push("vendor-data");
    }
    writeln!(
        o,
        "        instance-id {}, hostname {}; files: {}",
        c.instance_id,
        c.hostname,
        files.join(", ")
    )
}
