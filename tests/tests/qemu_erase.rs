//! `wipe: secure` end to end (issue 14): an NVMe disk and a virtio disk, each 1 GiB and
//! filled by the test with data that differs in every MiB.
//!
//! 1. `storage.wipe: secure`, no fallback: the virtio disk offers no secure erase, so
//!    preflight refuses the run with the sentence, and both disk files are byte for byte
//!    what they were (sha256) — the NVMe disk, which could have been erased, included.
//! 2. `disks[].wipe: secure` on both, `storage.erase.fallback: [overwrite]`: the NVMe
//!    disk is erased by the controller — QEMU's emulated NVMe implements Format NVM (it
//!    zeroes the namespace whatever the Secure Erase Settings) and no Sanitize (SANICAP
//!    0), no cryptographic format (FNA 0), so the method is `nvme_format_user_data` —
//!    the virtio disk by the `overwrite` fallback. The report's samples show every
//!    sampled block changed and none left with data; host-side, the data the test wrote
//!    is gone outside the GPT the run laid out afterwards.

use imprint_tests::fixtures::guest_base;
use imprint_tests::qemu::{Bus, Disk, Firmware};
use imprint_tests::seed::{disk_file, provision, run_agent, step, SeedDoc};
use imprint_tests::server::Server;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
const DISK: u64 = 1 << 30;
const NVME_SERIAL: &str = "SN-E-NVME";
const VIRTIO_SERIAL: &str = "SN-E-VIRT";
/// The partition each run lays out after the wipe (GPT, then 64 MiB from 1 MiB).
const LAID_OUT: u64 = 80 * MIB;

/// Fills `file` with a pattern that differs in every MiB and is never zero.
fn fill(file: &Path, seed: u8) {
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    for i in 0..DISK / MIB {
        for (j, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(seed).wrapping_add((j >> 3) as u8) | 0x80;
        }
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
}

fn sha256_file(file: &Path) -> String {
    let mut f = std::fs::File::open(file).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 * MIB as usize];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Whether every byte of `file` from `LAID_OUT` to 1 MiB before its end is zero.
fn data_gone(file: &Path) -> bool {
    let data = std::fs::read(file).unwrap();
    data[LAID_OUT as usize..(DISK - MIB) as usize]
        .iter()
        .all(|&b| b == 0)
}

/// The document: disk `a` NVMe, `b` virtio, one partition on each; `wipe` lines as given.
fn document(doc: &SeedDoc, disk_wipe: &str, storage: &str) -> String {
    format!(
        "version: 1\nhost: {{ hostname: {host} }}\ndisks:\n\
         \x20 - {{ name: a, match: {{ serial: \"{NVME_SERIAL}\" }}{disk_wipe} }}\n\
         \x20 - {{ name: b, match: {{ serial: \"{VIRTIO_SERIAL}\" }}{disk_wipe} }}\n\
         storage:\n{storage}\
         \x20 partitions:\n\
         \x20   - {{ name: pa, disk: a, size: 64MiB }}\n\
         \x20   - {{ name: pb, disk: b, size: 64MiB }}\n\
         report: {{ url: \"{base}{report}\", token: \"{token}\" }}\nfinish: reboot\n",
        host = doc.hostname,
        base = doc.base,
        report = doc.report_path(),
        token = doc.report_token,
    )
}

fn vm_disks(a: &Path, b: &Path) -> Vec<Disk> {
    vec![
        Disk::existing(a, NVME_SERIAL).bus(Bus::Nvme),
        Disk::existing(b, VIRTIO_SERIAL),
    ]
}

/// The `secure` part of a wipe step's output.
fn secure<'a>(fin: &'a Value, disk: &str) -> &'a Value {
    let s = &step(fin, &format!("wipe:{disk}"))["output"]["secure"];
    assert!(
        s.is_object(),
        "wipe:{disk} reports no secure erase: {fin:#}"
    );
    s
}

/// Every sampled block changed, none kept its data.
fn assert_proved(s: &Value, what: &str) {
    let n = &s["samples"];
    assert_eq!(n["count"], 64, "{what}: {s:#}");
    assert_eq!(n["bytes_each"], MIB, "{what}");
    assert_eq!(
        n["changed"], 64,
        "{what}: every sampled block held data before"
    );
    assert_eq!(n["unchanged_data"], 0, "{what}");
    assert!(s["seconds"].as_f64().is_some(), "{what}: the time taken");
}

#[test]
fn nvme_erases_by_format_and_a_virtio_disk_is_refused_or_overwritten_as_the_document_says() {
    let server = Server::start();
    let keep = tempfile::tempdir().unwrap();
    let (a, b): (PathBuf, PathBuf) = (
        disk_file(keep.path(), "a.raw", DISK),
        disk_file(keep.path(), "b.raw", DISK),
    );
    fill(&a, 31);
    fill(&b, 57);
    let before = (sha256_file(&a), sha256_file(&b));

    // 1. No fallback: the virtio disk is refused before any disk is touched.
    let doc = SeedDoc::new(&guest_base(&server), "erase-refused");
    server.serve_bytes(
        "/refused.yaml",
        document(&doc, "", "  wipe: secure\n").into_bytes(),
    );
    let (_vm, _, fin, log) = run_agent(
        &server,
        &doc,
        "/refused.yaml",
        vm_disks(&a, &b),
        Firmware::Bios,
        None,
    );
    assert_eq!(fin["result"], "failure", "{fin:#}\n{log}");
    let text = fin.to_string();
    assert!(
        text.contains("refusing to securely erase /dev/vda: the device reports no secure erase")
            && text.contains("allows no fallback")
            && text.contains("storage.erase.fallback: [overwrite]"),
        "the refusal's sentence: {fin:#}"
    );
    assert_eq!(
        (sha256_file(&a), sha256_file(&b)),
        before,
        "a refused run leaves both disks as they were"
    );

    // 2. Per-disk `secure`, overwrite allowed: NVMe Format, then the fallback on virtio.
    let doc = SeedDoc::new(&guest_base(&server), "erase-done");
    server.serve_bytes(
        "/done.yaml",
        document(
            &doc,
            ", wipe: secure",
            "  erase: { fallback: [overwrite] }\n",
        )
        .into_bytes(),
    );
    let (_vm, secs, fin) = provision(
        &server,
        &doc,
        "/done.yaml",
        vm_disks(&a, &b),
        Firmware::Bios,
        None,
    );
    let sa = secure(&fin, "a");
    assert_eq!(sa["method"], "nvme_format_user_data", "{sa:#}");
    assert_eq!(sa["fallback"], false);
    assert_eq!(sa["claimed"]["interface"], "nvme");
    let caps: Vec<&str> = sa["claimed"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(caps, ["format nvm"], "QEMU offers Format NVM only");
    assert_proved(sa, "nvme");
    let sb = secure(&fin, "b");
    assert_eq!(sb["method"], "overwrite", "{sb:#}");
    assert_eq!(sb["fallback"], true);
    assert_eq!(sb["claimed"]["interface"], "other");
    assert_eq!(sb["samples"]["zero"], 64, "an overwrite leaves zeros");
    assert_proved(sb, "virtio");
    for (f, what) in [(&a, "nvme"), (&b, "virtio")] {
        assert!(
            data_gone(f),
            "{what}: the test's data is gone from the disk file"
        );
    }
    eprintln!(
        "erased: nvme in {} s, virtio in {} s; run {secs:.0} s",
        sa["seconds"], sb["seconds"]
    );
}
