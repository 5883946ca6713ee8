//! Every event type and every step output: serialized, it matches the schema
//! `imprint schema report` prints, and it reads back as what was sent.

use super::output::*;
use super::*;
use crate::plan::{Digest, DigestAlgorithm, ImageFormat, PartitionPlan};
use crate::storage::{luks, lvm, raid};
use imprint_tests::report_schema::ReportSchema;
use std::path::PathBuf;
use std::sync::OnceLock;

fn schema() -> &'static ReportSchema {
    static S: OnceLock<ReportSchema> = OnceLock::new();
    S.get_or_init(|| ReportSchema::new(&crate::schema::of(crate::schema::Kind::Report)))
}

fn envelope(seq: u64, body: Body) -> Event {
    Event {
        protocol: PROTOCOL,
        run_id: uuid::Uuid::from_u128(0x6f1c_9a52_0000_4000_8000_0000_0000_0001),
        host: "web-01".into(),
        time: "2026-11-21T21:04:05.123Z".into(),
        seq,
        body,
    }
}

/// Serializes, checks against the schema, reads back and compares what it would send again.
fn round_trip(ev: &Event) -> serde_json::Value {
    let json = serde_json::to_value(ev).unwrap();
    schema().check(&json).unwrap_or_else(|e| panic!("{e}"));
    let back: Event =
        serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}: {json:#}"));
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        json,
        "read back differently"
    );
    json
}

fn part(n: u32) -> PartitionPlan {
    PartitionPlan {
        name: format!("p{n}"),
        number: n,
        label: "root".into(),
        type_guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
        first_lba: 2048,
        last_lba: 4095,
        path: PathBuf::from(format!("/dev/sda{n}")),
    }
}

fn digest() -> Digest {
    Digest {
        algorithm: DigestAlgorithm::Sha256,
        hex: "ab".repeat(32),
    }
}

fn written() -> crate::image::WriteOutcome {
    crate::image::WriteOutcome {
        url_used: "http://prov/img.zst".into(),
        compression: crate::image::Compression::Zstd,
        container: crate::image::Container::Stream(crate::image::Compression::Zstd),
        registry: Some(Box::new(crate::oci::Resolved {
            reference: "oci://registry.example/os/disk:v1".into(),
            manifest: format!("sha256:{}", "ab".repeat(32)),
            index: Some(format!("sha256:{}", "cd".repeat(32))),
            pinned: false,
            layer: crate::oci::Layer {
                digest: format!("sha256:{}", "ef".repeat(32)),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                size: 10,
                title: Some("disk.raw.zst".into()),
            },
            signed_by: Some("openpgp:0123456789ABCDEF0123456789ABCDEF01234567".into()),
            insecure: false,
        })),
        bytes_downloaded: 10,
        bytes_written: 20,
        digest: digest(),
        signed_by: Some("minisign:A1B2C3D4E5F60708 (timestamp:1)".into()),
        written_blake3: Some("cd".repeat(32)),
        readback_blake3: Some("cd".repeat(32)),
        readback_seconds: Some(0.5),
        chunks: Some(Box::new(crate::image::chunked::ChunkReport {
            chunks: 3,
            unique: 2,
            digest: "sha512-256".into(),
            in_place_bytes: 5,
            disk_bytes: 1,
            zero_bytes: 4,
            local_bytes: 2,
            network_bytes: 8,
            network_compressed_bytes: 3,
            scanned_bytes: 20,
            scan_seconds: 0.1,
            scan_sampled: Some(256),
            readback_chunks: Some(3),
            stores: vec![crate::image::chunked::StoreReport {
                url: "http://prov/store".into(),
                local: false,
                chunks: 1,
                bytes: 3,
                failures: 2,
                corrupt_chunks: 1,
                dropped: Some("3 failures in a row, the last: HTTP 503".into()),
            }],
        })),
        zero_bytes_skipped: 4,
        resumes: 1,
        duration: std::time::Duration::from_millis(1500),
    }
}

/// One output of every step kind.
fn outputs() -> Vec<StepOutput> {
    let sda = PathBuf::from("/dev/sda");
    vec![
        StepOutput::Preflight(Checked {
            checks: vec![CheckPassed {
                check: "the image answers at http://prov/img.zst".into(),
                found: "http://prov/img.zst serves 10 B (10 bytes)".into(),
            }],
        }),
        StepOutput::Wipe(Wiped {
            disk: sda.clone(),
            released: vec!["stopped md array /dev/md127".into()],
            erased: crate::storage::wipe::WipeReport {
                disk: sda.clone(),
                erased: vec![crate::storage::wipe::Erased {
                    device: sda.clone(),
                    kind: "gpt".into(),
                    offset: Some(512),
                }],
                zeroed: vec![(0, 1 << 20)],
                discarded: false,
                forgot_partitions: vec![1],
                unreadable: vec![crate::storage::wipe::Unreadable {
                    device: sda.join("1"),
                    offset: 1 << 20,
                    len: 1 << 20,
                    error: "probing /dev/sda: Input/output error".into(),
                }],
            },
            secure: Some(crate::storage::erase::EraseReport {
                method: crate::storage::erase::Method::NvmeFormatUserData,
                fallback: false,
                claimed: crate::storage::erase::Claimed {
                    interface: "nvme".into(),
                    capabilities: vec!["format nvm".into()],
                    discard: true,
                    write_zeroes: true,
                },
                samples: crate::storage::erase::sample::Samples {
                    count: 64,
                    bytes_each: 1 << 20,
                    zero: 64,
                    changed: 64,
                    unchanged: 0,
                    unchanged_data: 0,
                },
                seconds: 1.5,
            }),
        }),
        StepOutput::Partition(Partitioned {
            disk: sda.clone(),
            disk_guid: uuid::Uuid::nil(),
            partitions: vec![part(1)],
        }),
        StepOutput::Append(Appended {
            disk: sda.clone(),
            appended: vec![part(3)],
        }),
        StepOutput::DiskImage(DiskImageWritten {
            image: written(),
            target: sda.clone(),
            gpt_backup_relocated: true,
            grown_partition: Some(GrownPartition {
                number: 1,
                size_bytes: 1 << 30,
            }),
            partitions: vec![part(1)],
        }),
        StepOutput::Rootfs(RootfsExtracted {
            format: ImageFormat::Rootfs,
            root: "/run/imprint/root".into(),
            compression: crate::image::Compression::Xz,
            bytes_downloaded: 9,
            digest: Some(digest()),
            signed_by: None,
            verified: true,
            extracted: crate::rootfs::Extracted {
                entries: 3,
                counts: Default::default(),
                archive_bytes: 30,
            },
            registry: None,
            duration_s: 1.25,
        }),
        StepOutput::Rootfs(RootfsExtracted {
            format: ImageFormat::Rootfs,
            root: "/run/imprint/root".into(),
            compression: crate::image::Compression::Gzip,
            bytes_downloaded: 90,
            digest: None,
            signed_by: None,
            verified: true,
            extracted: crate::rootfs::Extracted {
                entries: 3,
                counts: Default::default(),
                archive_bytes: 3072,
            },
            registry: Some(crate::rootfs::ContainerDeployed {
                reference: format!("oci://reg.example/os/app@sha256:{}", "a".repeat(64)),
                manifest: format!("sha256:{}", "a".repeat(64)),
                index: None,
                config: format!("sha256:{}", "b".repeat(64)),
                signed_by: Some("openpgp:0123456789ABCDEF0123456789ABCDEF01234567".into()),
                layers: vec![crate::rootfs::LayerApplied {
                    digest: format!("sha256:{}", "c".repeat(64)),
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    codec: crate::oci::LayerCodec::Gzip,
                    bytes: 90,
                    diff_id: format!("sha256:{}", "d".repeat(64)),
                    entries: 3,
                    whiteouts: 1,
                    opaque: 1,
                }],
            }),
            duration_s: 1.5,
        }),
        StepOutput::FilesystemImage(FilesystemImageWritten {
            format: ImageFormat::Filesystem,
            image: crate::image::WriteOutcome {
                written_blake3: None,
                readback_blake3: None,
                readback_seconds: None,
                ..written()
            },
            target: "/dev/sda2".into(),
            fstype: "ext4".into(),
            grown: "resize2fs: grown to 1 GiB".into(),
        }),
        StepOutput::Configdrive(ConfigdriveWritten {
            device: "/dev/sda4".into(),
            partition: Some(part(4)),
            configdrive: crate::configdrive::ConfigdriveOutcome {
                label: "cidata".into(),
                volume_id: 7,
                fs_uuid: "0000-0007".into(),
                fat_type: "FAT16".into(),
                files: vec!["meta-data".into()],
                bytes: 42,
            },
        }),
        StepOutput::Raid(raid::Created {
            name: "root".into(),
            path: "/dev/md/root".into(),
            device: "/dev/md127".into(),
            uuid: "a".repeat(8),
            metadata: "1.2".into(),
            members: vec!["/dev/sda2".into(), "/dev/sdb2".into()],
            level: 1,
            size_bytes: 1 << 30,
            resync: "background".into(),
        }),
        StepOutput::Luks(luks::Formatted {
            name: "cryptroot".into(),
            device: "/dev/md127".into(),
            mapping: "/dev/mapper/cryptroot".into(),
            uuid: uuid::Uuid::nil().to_string(),
            cipher: "aes-xts-plain64".into(),
            key_size: 512,
            pbkdf: luks::Pbkdf {
                kind: "argon2id".into(),
                max_memory_kib: 262_144,
                time_ms: 2000,
            },
            keyslots: vec![luks::Keyslot {
                slot: 0,
                kind: "recovery-passphrase".into(),
            }],
            bindings: vec![luks::Binding {
                pins: vec!["tang http://tang".into(), "tpm2".into()],
                threshold: 1,
                keyslot: 1,
                token: 0,
                tang_thumbprints_used: vec!["thp".into()],
                verified: true,
            }],
        }),
        StepOutput::Lvm(lvm::Created {
            vg: "vg0".into(),
            pvs: vec!["/dev/mapper/cryptroot".into()],
            volumes: vec![lvm::Volume {
                name: "root".into(),
                size_bytes: Some(1 << 30),
                lv_uuid: "x".into(),
            }],
        }),
        StepOutput::Mkfs(Made {
            device: "/dev/vg0/root".into(),
            fstype: crate::kinds::FsType::Ext4,
            label: Some("root".into()),
            uuid: uuid::Uuid::nil().to_string(),
            mount: Some("/".into()),
        }),
        StepOutput::Mount(Mounted {
            device: "/dev/vg0/root".into(),
            mountpoint: "/".into(),
            staged_at: "/run/imprint/root".into(),
            options: vec!["noatime".into()],
        }),
        StepOutput::Finalize(crate::finalize::Finalized {
            family: crate::finalize::Family::Debian,
            kernel_cmdline: vec!["quiet".into()],
            files: vec!["/etc/fstab".into()],
            bios_disks: vec![sda.clone()],
            esps: vec![crate::finalize::Esp {
                device: "/dev/sda1".into(),
                mounted_at: "/boot/efi".into(),
                copied_files: None,
            }],
            commands: vec![crate::finalize::CommandRun {
                command: vec!["update-grub".into()],
                duration_ms: 2300,
                ok: true,
                stdout: Some(String::new()),
                stderr: Some("done".into()),
                error: None,
            }],
        }),
        StepOutput::BootEntries(crate::efi::BootEntries {
            skipped: None,
            entries: vec![crate::efi::BootEntry {
                number: "0003".into(),
                description: "Debian GNU/Linux (imprint, serial SN-A)".into(),
                disk: sda.clone(),
                partition: "/dev/sda2".into(),
                partition_number: 2,
                partition_guid: uuid::Uuid::nil(),
                loader: "\\EFI\\debian\\shimx64.efi".into(),
                loader_kind: crate::efi::esp::LoaderKind::Shim,
            }],
            replaced: vec!["0004".into()],
            passed_over: vec!["/dev/sdb2: no loader on it".into()],
            boot_order: vec!["0003".into(), "0001".into()],
        }),
        StepOutput::BootEntries(crate::efi::BootEntries {
            skipped: Some("the machine did not boot in UEFI mode".into()),
            entries: vec![],
            replaced: vec![],
            passed_over: vec![],
            boot_order: vec![],
        }),
    ]
}

#[test]
fn every_step_output_round_trips_and_matches_the_schema() {
    for (i, out) in outputs().into_iter().enumerate() {
        let ev = envelope(
            i as u64 + 1,
            Body::Step(StepEvent::succeeded(
                "s",
                std::time::Duration::from_millis(5),
                out,
            )),
        );
        round_trip(&ev);
    }
}

#[test]
fn step_progress_and_final_events_round_trip_and_match_the_schema() {
    let started = round_trip(&envelope(1, Body::Step(StepEvent::started("wipe:root"))));
    assert_eq!(started["kind"], "step");
    assert_eq!(started["protocol"], 1);
    assert!(
        started.get("duration_ms").is_none() && started.get("details").is_none(),
        "{started}"
    );
    round_trip(&envelope(
        2,
        Body::Step(StepEvent::failed(
            "write-image",
            Some(std::time::Duration::from_secs(1)),
            "boom",
        )),
    ));
    let progress = round_trip(&envelope(
        3,
        Body::Progress(ProgressEvent {
            step: "write-image".into(),
            bytes_downloaded: 1,
            bytes_total: None,
            bytes_written: 2,
            rate_bytes_per_sec: 3,
        }),
    ));
    assert!(progress["bytes_total"].is_null(), "{progress}");
    let steps = outputs()
        .into_iter()
        .map(|o| StepRecord {
            step: "s".into(),
            state: StepState::Succeeded,
            started: Some("2026-11-21T21:04:05.123Z".into()),
            duration_ms: 5,
            error: None,
            output: Some(o),
        })
        .chain([StepRecord::failed(
            "finalize",
            Some("2026-11-21T21:04:06.000Z".into()),
            7,
            "boom",
        )])
        .collect();
    let fin = FinalReport {
        result: RunResult::Failure,
        failed_step: Some("finalize".into()),
        error: Some("boom".into()),
        undone: vec!["FAILED to stopped md array /dev/md127: busy".into()],
        disks_after: crate::report::DisksAfter::NotCleanedUp,
        remaining: vec!["md array /dev/md127 still running (busy)".into()],
        hostname: Some("web-01".into()),
        instance_id: Some("i-1".into()),
        agent_version: "0.1.0".into(),
        duration_ms: Some(12),
        steps,
        disks: Some(vec![ChosenDisk {
            name: "root".into(),
            path: "/dev/sda".into(),
            size_bytes: 1 << 30,
            logical_sector: 512,
            serial: None,
            model: Some("QEMU".into()),
            inventory: Some(crate::disks::Disk {
                path: "/dev/sda".into(),
                ..Default::default()
            }),
        }]),
    };
    let json = round_trip(&envelope(4, Body::Final(fin)));
    assert_eq!(json["kind"], "final");
    assert!(json["disks"][0]["serial"].is_null(), "{json}");
    round_trip(&envelope(
        5,
        Body::Final(FinalReport::early_failure("plan", "no disk matches", true)),
    ));
    round_trip(&envelope(
        6,
        Body::Final(FinalReport::early_failure("discover", "no document", false)),
    ));
}

#[test]
fn the_schema_refuses_what_the_protocol_does_not_allow() {
    let mut ev =
        serde_json::to_value(envelope(1, Body::Step(StepEvent::started("wipe:root")))).unwrap();
    assert!(schema().check(&ev).is_ok());
    for (field, bad) in [("kind", "stop"), ("state", "paused"), ("run_id", "")] {
        let mut e = ev.clone();
        e[field] = serde_json::json!(bad);
        assert!(schema().check(&e).is_err(), "{field}={bad} accepted");
    }
    ev.as_object_mut().unwrap().remove("protocol");
    assert!(
        schema().check(&ev).is_err(),
        "an event without a protocol version was accepted"
    );
}

#[test]
fn every_schema_compiles() {
    use crate::schema::Kind;
    for kind in [
        Kind::Document,
        Kind::Plan,
        Kind::Inventory,
        Kind::Disks,
        Kind::Report,
    ] {
        let s = crate::schema::of(kind);
        assert!(s.is_object(), "{kind:?}");
        ReportSchema::new(&s);
    }
}

#[test]
fn a_reporter_numbers_its_events_under_one_run_id() {
    let r = Reporter::new("h", None, None).unwrap();
    let a = r.envelope(Body::Step(StepEvent::started("a")));
    let b = r.envelope(Body::Step(StepEvent::started("b")));
    assert_eq!((a.seq, b.seq), (1, 2));
    assert_eq!(a.run_id, b.run_id);
    assert_eq!(a.run_id, r.run_id());
    assert_ne!(Reporter::new("h", None, None).unwrap().run_id(), r.run_id());
}
