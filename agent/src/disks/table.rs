//! The `imprint disks` table, and the notes under it (problems, further paths).

use super::{Disk, Signature};
use crate::units::Bytes;

fn sig_list(sigs: &[Signature]) -> Vec<String> {
    sigs.iter().map(|s| s.kind.clone()).collect()
}

/// The `imprint disks` table: one line per disk with what hints match on and what is on it.
pub fn render_table(disks: &[Disk]) -> String {
    let header = [
        "PATH",
        "SIZE",
        "SECTOR",
        "ROT",
        "MODEL",
        "SERIAL",
        "WWN",
        "PARTS",
        "SIGNATURES",
        "HOLDERS",
        "MOUNTS",
        "BY-PATH",
    ];
    let dash = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let rows: Vec<Vec<String>> = disks
        .iter()
        .map(|d| {
            let mut sigs = sig_list(&d.signatures);
            for p in &d.partitions {
                sigs.extend(
                    sig_list(&p.signatures)
                        .into_iter()
                        .map(|k| format!("{}:{k}", p.number)),
                );
            }
            vec![
                d.path.display().to_string(),
                Bytes(d.size_bytes).human(),
                format!("{}/{}", d.logical_sector, d.physical_sector),
                if d.rotational { "yes" } else { "no" }.into(),
                d.model
                    .clone()
                    .unwrap_or_else(|| "-".into())
                    .replace(' ', "_"),
                d.serial_display(),
                d.wwn.clone().unwrap_or_else(|| "-".into()),
                d.partitions.len().to_string(),
                dash(sigs),
                dash(d.holders.clone()),
                dash(d.mounts.clone()),
                d.by_path_display(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r);
    }
    for d in disks {
        if let Some(why) = super::multipath_refusal(d) {
            out += &format!("paths of {}: {why}\n", d.path.display());
        }
        if let Some(n) = &d.nvme {
            let ids: Vec<String> = n.all().iter().map(|(k, v)| format!("{k} {v}")).collect();
            out += &format!("nvme ids of {}: {}\n", d.path.display(), ids.join(", "));
        }
        for p in &d.problems {
            out += &format!("problem on {}: {p}\n", d.path.display());
        }
    }
    out
}
