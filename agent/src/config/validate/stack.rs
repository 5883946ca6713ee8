//! The block stack: md arrays of partitions on distinct disks, enough of them for the
//! level; LUKS volumes sit on a partition or array and something can unlock them; volume
//! groups have physical volumes and one `rest` each.

use super::checker::Checker;
use super::names::{Kind, Namespace, LUKS, MD, PART};
use crate::config::explicit::{ExplicitStorage, Origin};
use crate::config::model::{Luks, Raid};
use crate::config::types::Name;
use crate::kinds::{MdMetadata, RaidLevel};
use crate::units::{Bytes, SizeSpec, KIB, MIB};
use std::collections::HashMap;

/// Checks every md array of `st`: enough members for its level, each a partition on a
/// disk of its own, a chunk only where the level stripes.
pub(super) fn raid(c: &mut Checker, st: &ExplicitStorage, ns: &mut Namespace) {
    for (r, o) in &st.raid {
        if let Some(m) = member_count(r.level, r.members.len(), "members") {
            c.err(o.field("members"), m);
        }
        if let Some(m) = r.chunk.and_then(|ch| chunk_problem(r.level, ch)) {
            c.err(o.field("chunk"), m);
        }
        let mut disks: Vec<(String, &Name)> = Vec::new();
        for (i, m) in r.members.iter().enumerate() {
            let path = o.field(&format!("members[{i}]"));
            if let Some(Kind::Partition { disk }) =
                ns.resolve(c, path.clone(), m, &[PART], "md members must be partitions")
            {
                if let Some((_, other)) = disks.iter().find(|(d, _)| *d == disk) {
                    c.err(
                        path.clone(),
                        format!(
                            "{:?} and {:?} are both on disk {disk:?}; {}",
                            other.as_str(),
                            m.as_str(),
                            distinct_reason(r.level)
                        ),
                    );
                }
                disks.push((disk, m));
            }
            ns.consume(c, path, m);
        }
        boot_arrays(c, st, r, o);
    }
}

fn distinct_reason(level: RaidLevel) -> String {
    match level {
        RaidLevel::Raid1 => "a mirror needs two distinct disks".into(),
        l => format!("the members of a {l} array must be on distinct disks (one disk failing would take two)"),
    }
}

/// Why `n` members (or disks: `what`) are too few for `level`; `None` when enough.
pub(super) fn member_count(level: RaidLevel, n: usize, what: &str) -> Option<String> {
    let min = level.min_members();
    if n >= min {
        return None;
    }
    Some(match level {
        RaidLevel::Raid1 => format!("a RAID1 mirror needs at least two {what}, got {n}"),
        RaidLevel::Raid10 => format!(
            "a RAID10 array needs at least 4 {what}, got {n}: imprint builds RAID10 with md's near-2 layout on 4 or more (md would take 2 or 3, imprint refuses them); use level 1 on 2, level 1 or 5 on 3"
        ),
        l => format!("a {l} array needs at least {min} {what}, got {n}"),
    })
}

/// Why `chunk` does not suit `level`; `None` when it does.
pub(super) fn chunk_problem(level: RaidLevel, chunk: Bytes) -> Option<String> {
    if !level.striped() {
        return Some(format!(
            "{level} does not stripe, so it has no chunk size; remove chunk"
        ));
    }
    let ok = chunk.0.is_power_of_two() && (4 * KIB..=64 * MIB).contains(&chunk.0);
    (!ok).then(|| format!("expected a power of two from 4KiB to 64MiB, got {chunk}"))
}

/// `/boot` and the ESP are read by firmware and GRUB from one member alone: an array
/// under them is RAID1, and under the ESP its superblock is at the end (1.0).
fn boot_arrays(c: &mut Checker, st: &ExplicitStorage, r: &Raid, o: &Origin) {
    for (f, fo) in &st.filesystems {
        let Some(mount) = f.mount.as_ref().map(|m| m.as_str()) else {
            continue;
        };
        if f.device != r.name || !matches!(mount, "/boot" | "/boot/efi") {
            continue;
        }
        if r.level != RaidLevel::Raid1 {
            c.err(
                o.field("level"),
                format!(
                    "{:?} holds {mount} ({}); firmware and GRUB read {mount} from one member alone, so its array must be RAID1, not {}",
                    r.name.as_str(),
                    fo.path,
                    r.level
                ),
            );
        } else if mount == "/boot/efi" && r.metadata != MdMetadata::V1_0 {
            c.err(
                o.field("metadata"),
                format!(
                    "{:?} holds the ESP ({}); firmware reads a member as a plain FAT filesystem, so the superblock must be at the end: metadata: \"1.0\"",
                    r.name.as_str(),
                    fo.path
                ),
            );
        }
    }
}

/// Checks every LUKS volume of `st`: its device, then what unlocks it.
pub(super) fn luks(c: &mut Checker, st: &ExplicitStorage, ns: &mut Namespace) {
    for (l, o) in &st.luks {
        if o.is_layout() {
            ns.consume(c, o.path.clone(), &l.device);
        } else if ns
            .resolve(
                c,
                o.field("device"),
                &l.device,
                &[PART, MD],
                "LUKS goes on a partition or an md array",
            )
            .is_some()
        {
            ns.consume(c, o.field("device"), &l.device);
        }
        unlocking(c, o, l);
    }
}

/// Pins, threshold, PCRs, key size and cipher of one LUKS volume.
fn unlocking(c: &mut Checker, o: &Origin, l: &Luks) {
    let pins = l.tang.len() + usize::from(l.tpm2.is_some());
    if pins == 0 && l.recovery_passphrase.is_none() {
        c.err(
            o.path.clone(),
            "nothing could unlock this volume; add tang, tpm2 or recovery_passphrase",
        );
    }
    if l.threshold == 0 {
        c.err(o.field("threshold"), "must be at least 1");
    } else if pins > 0 && l.threshold as usize > pins {
        c.err(
            o.field("threshold"),
            format!("threshold {} is more than the {pins} pin(s) given; it must be between 1 and {pins}", l.threshold),
        );
    } else if pins == 0 && l.threshold > 1 {
        c.err(o.field("threshold"), "a threshold needs tang or tpm2 pins");
    }
    for (i, t) in l.tang.iter().enumerate() {
        if t.thumbprint.is_none() && !t.trust_on_first_use {
            c.err(
                o.field(&format!("tang[{i}].thumbprint")),
                "required: the thumbprint of the tang server's signing key (tang-show-keys), or trust_on_first_use: true",
            );
        }
    }
    if let Some(tpm) = &l.tpm2 {
        for (i, pcr) in tpm.pcrs.iter().enumerate() {
            if *pcr > 23 {
                c.err(
                    o.field(&format!("tpm2.pcrs[{i}]")),
                    format!("PCR {pcr} does not exist; PCRs are 0 to 23"),
                );
            } else if tpm.pcrs[..i].contains(pcr) {
                c.err(
                    o.field(&format!("tpm2.pcrs[{i}]")),
                    format!("PCR {pcr} is listed twice"),
                );
            }
        }
    }
    if !matches!(l.key_size, 256 | 512) {
        c.err(
            o.field("key_size"),
            format!(
                "expected 256 or 512 (bits; XTS splits it in two keys), got {}",
                l.key_size
            ),
        );
    }
    if l.cipher.trim().is_empty() {
        c.err(o.field("cipher"), "is empty; remove it for aes-xts-plain64");
    }
}

/// Checks every volume group of `st`.
pub(super) fn lvm(c: &mut Checker, st: &ExplicitStorage, ns: &mut Namespace) {
    let mut vgs: HashMap<String, String> = HashMap::new();
    for (vg, o, vos) in &st.lvm {
        if let Some(other) = vgs.insert(vg.vg.to_string(), o.path.clone()) {
            c.err(
                o.field("vg"),
                format!(
                    "volume group {:?} is already declared by {other}",
                    vg.vg.as_str()
                ),
            );
        }
        if vg.pvs.is_empty() {
            c.err(
                o.field("pvs"),
                "a volume group needs at least one physical volume",
            );
        }
        for (i, pv) in vg.pvs.iter().enumerate() {
            let path = o.field(&format!("pvs[{i}]"));
            if ns
                .resolve(
                    c,
                    path.clone(),
                    pv,
                    &[PART, MD, LUKS],
                    "physical volumes are partitions, md arrays or LUKS volumes",
                )
                .is_some()
            {
                ns.consume(c, path, pv);
            }
        }
        let mut rest: Option<&Origin> = None;
        for (v, vo) in vg.volumes.iter().zip(vos) {
            match v.size {
                SizeSpec::Rest => {
                    if let Some(first) = rest {
                        c.err(
                            vo.field("size"),
                            format!("only one volume per volume group can take the rest; {} already does", first.path),
                        );
                    } else {
                        rest = Some(vo);
                    }
                }
                SizeSpec::Bytes(b) if b.0 == 0 => {
                    c.err(vo.field("size"), "a volume needs a size above zero")
                }
                SizeSpec::Bytes(_) => {}
            }
        }
    }
}
