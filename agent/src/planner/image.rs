//! The image layer: where the image goes and how it is checked; then the partitions a
//! whole-disk image gets beside its own, and what builds on them.

use super::chosen::{self, Chosen};
use super::devices::{disk_of, Devices};
use super::targets::{root_fs, Targets};
use crate::config::{ExplicitStorage, Image};
use crate::plan::{AppendPlan, Digest, DigestAlgorithm, ImageFormat, ImagePlan, Plan, Step};
use std::collections::HashSet;
use std::path::PathBuf;

/// The write-image step of `img`.
pub(super) fn write(
    img: &Image,
    st: &ExplicitStorage,
    chosen: &[Chosen],
    targets: &Targets,
    dev: &Devices,
) -> Step {
    let (target_disk, target_path) = match img.format {
        ImageFormat::Disk => {
            let name = targets.image_disk.clone().expect("disk image has a disk");
            let path = chosen::disk(chosen, &name).path.clone();
            (name, path)
        }
        ImageFormat::Filesystem => {
            let t = img.target.as_ref().expect("validated target").to_string();
            (disk_of(st, &t).unwrap_or_default(), dev.path[&t].clone())
        }
        ImageFormat::Rootfs => {
            let (f, _) = root_fs(st).expect("validated / mount");
            (
                disk_of(st, f.device.as_str()).unwrap_or_default(),
                dev.path[f.device.as_str()].clone(),
            )
        }
    };
    Step::WriteImage(ImagePlan {
        urls: std::iter::once(&img.url)
            .chain(&img.mirrors)
            .map(|u| u.to_string())
            .collect(),
        digest: digest(img),
        format: img.format,
        target_disk,
        target_path,
        grow: img.grow,
        verify: img.verify,
    })
}

fn digest(img: &Image) -> Digest {
    match (&img.sha256, &img.sha512) {
        (Some(h), _) => Digest {
            algorithm: DigestAlgorithm::Sha256,
            hex: h.to_string().to_ascii_lowercase(),
        },
        (None, Some(h)) => Digest {
            algorithm: DigestAlgorithm::Sha512,
            hex: h.to_string().to_ascii_lowercase(),
        },
        (None, None) => unreachable!("validated: one digest"),
    }
}

/// Appends the step adding `a`'s partitions, then moves the LUKS and mkfs steps that
/// build on them after it: they were planned in document order, before the image.
pub(super) fn move_after_image(a: AppendPlan, plan: &mut Plan) {
    let mut late: HashSet<PathBuf> = a.partitions.iter().map(|p| p.node.clone()).collect();
    let (mut keep, mut moved) = (Vec::new(), Vec::new());
    for step in plan.steps.drain(..) {
        let on_late = match &step {
            Step::Luks(l) if late.contains(&l.device) => Some(l.path.clone()),
            Step::Mkfs(m) if late.contains(&m.device) => Some(m.device.clone()),
            _ => None,
        };
        match on_late {
            Some(p) => {
                late.insert(p);
                moved.push(step);
            }
            None => keep.push(step),
        }
    }
    keep.push(Step::AppendPartitions(a));
    keep.extend(moved);
    plan.steps = keep;
}
