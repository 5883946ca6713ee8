//! Parsing, validation and expansion tests: the two product.md documents verbatim, and
//! malformed documents each with the exact path and a key phrase of its error.

use super::*;

pub(crate) const DOC1: &str = imprint_tests::documents::WEB_DOC;

pub(crate) const DOC2: &str = imprint_tests::documents::SEED_DOC;

/// Parses and validates, returning the first error.
fn check(text: &str) -> Result<Document, DocError> {
    let doc = parse(text)?;
    validate(&doc)?;
    Ok(doc)
}

#[test]
fn product_documents_parse_and_validate_verbatim() {
    let d1 = check(DOC1).unwrap();
    assert_eq!(d1.host.hostname.as_str(), "web-01");
    assert_eq!(
        d1.image.as_ref().unwrap().format,
        crate::plan::ImageFormat::Disk
    );
    assert_eq!(
        d1.report.as_ref().unwrap().token.as_ref().unwrap().expose(),
        "s3cr3t-token"
    );
    assert_eq!(d1.report.as_ref().unwrap().heartbeat, 10);
    let cd = d1.configdrive.as_ref().unwrap();
    assert!(cd
        .user_data
        .as_ref()
        .unwrap()
        .starts_with("#cloud-config\n"));
    assert_eq!(
        cd.network_config.as_ref().unwrap()["ethernets"]["all"]["match"]["name"],
        "e*"
    );
    assert_eq!(cd.size, crate::units::Bytes(64 << 20));
    let d2 = check(DOC2).unwrap();
    let layout = d2.storage.as_ref().unwrap().layout.as_ref().unwrap();
    assert_eq!(layout.lvm.as_ref().unwrap().len(), 8);
    assert_eq!(layout.luks.as_ref().unwrap().threshold, Some(2));
    assert_eq!(
        placeholders(&d2),
        vec![
            ("image.sha512".to_string(), "<128 hex digits>".to_string()),
            (
                "storage.layout.luks.tang[0].thumbprint".to_string(),
                "<S256 thumbprint of a signing key>".to_string()
            ),
        ]
    );
    assert!(placeholders(&d1).is_empty());
}

#[test]
fn doc2_expands_to_mirrored_boot_luks_and_lvm() {
    // An x86_64 machine's layout (BIOS boot partitions), wherever the tests run.
    let doc = parse(DOC2)
        .unwrap()
        .with_image_arch(crate::arch::Arch::X86_64);
    let ex = expand_storage(&doc).unwrap();
    let parts: Vec<(&str, &str, String)> = ex
        .partitions
        .iter()
        .map(|(p, _)| (p.name.as_str(), p.disk.as_str(), p.size.to_string()))
        .collect();
    assert_eq!(
        parts,
        [
            ("a-bios", "a", "1MiB".to_string()),
            ("a-esp", "a", "512MiB".into()),
            ("a-boot", "a", "1GiB".into()),
            ("a-root", "a", "rest".into()),
            ("b-bios", "b", "1MiB".into()),
            ("b-esp", "b", "512MiB".into()),
            ("b-boot", "b", "1GiB".into()),
            ("b-root", "b", "rest".into()),
        ]
    );
    let types: Vec<String> = ex
        .partitions
        .iter()
        .map(|(p, _)| p.ptype.to_string())
        .collect();
    assert_eq!(types[..4], ["bios-boot", "esp", "raid", "raid"]);
    let raid: Vec<(&str, Vec<&str>, &str)> = ex
        .raid
        .iter()
        .map(|(r, _)| {
            (
                r.name.as_str(),
                r.members.iter().map(|m| m.as_str()).collect(),
                r.metadata.as_str(),
            )
        })
        .collect();
    assert_eq!(
        raid,
        [
            ("md-boot", vec!["a-boot", "b-boot"], "1.0"),
            ("md-root", vec!["a-root", "b-root"], "1.2")
        ]
    );
    assert_eq!(ex.luks.len(), 1);
    let (luks, _) = &ex.luks[0];
    assert_eq!(
        (luks.name.as_str(), luks.device.as_str(), luks.threshold),
        ("luks-root", "md-root", 2)
    );
    assert_eq!(
        (
            luks.cipher.as_str(),
            luks.key_size,
            luks.tang.len(),
            luks.tpm2.is_some()
        ),
        ("aes-xts-plain64", 512, 1, true)
    );
    let (vg, _, _) = &ex.lvm[0];
    assert_eq!(vg.vg.as_str(), "vg0");
    assert_eq!(
        vg.pvs.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        ["luks-root"]
    );
    let lvs: Vec<(&str, String)> = vg
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v.size.to_string()))
        .collect();
    assert_eq!(
        lvs,
        [
            ("root", "4GiB".to_string()),
            ("home", "512MiB".into()),
            ("tmp", "512MiB".into()),
            ("var", "2GiB".into()),
            ("var_log", "512MiB".into()),
            ("var_log_audit", "512MiB".into()),
            ("var_tmp", "512MiB".into()),
            ("swap", "256MiB".into()),
        ]
    );
    let fs: Vec<(&str, &str, Option<&str>, String)> = ex
        .filesystems
        .iter()
        .map(|(f, _)| {
            (
                f.device.as_str(),
                f.fstype.as_str(),
                f.mount.as_ref().map(|m| m.as_str()),
                f.options.join(","),
            )
        })
        .collect();
    let esp_opts = "umask=0077,nofail,x-systemd.device-timeout=10s";
    assert!(
        fs.contains(&("a-esp", "vfat", Some("/boot/efi"), esp_opts.into())),
        "the mounted ESP is on one disk of the mirror: nofail, so a boot without it works"
    );
    assert!(
        fs.contains(&("b-esp", "vfat", None, esp_opts.into())),
        "the second ESP is kept in sync, not mounted"
    );
    assert!(fs.contains(&("md-boot", "ext4", Some("/boot"), "".into())));
    assert!(fs.contains(&("root", "xfs", Some("/"), "".into())));
    assert!(fs.contains(&("tmp", "xfs", Some("/tmp"), "nodev,nosuid,noexec".into())));
    assert!(fs.contains(&(
        "var_log_audit",
        "xfs",
        Some("/var/log/audit"),
        "nodev,nosuid,noexec".into()
    )));
    assert!(fs.contains(&("swap", "swap", None, "".into())));
    assert_eq!(
        ex.layout_disks,
        [Name::parse("a").unwrap(), Name::parse("b").unwrap()]
    );
}

#[test]
fn single_disk_layout_without_luks_or_lvm_is_one_root_filesystem() {
    let doc = check(
        "version: 1\nhost: {hostname: h}\ndisks: [{name: d, match: {}}]\nstorage: {layout: {root: {type: xfs}}}\n\
         image: {url: 'http://x/r.tar', sha256: '<x>', format: rootfs, arch: x86_64}\n",
    )
    .unwrap();
    let ex = expand_storage(&doc).unwrap();
    assert!(ex.raid.is_empty() && ex.luks.is_empty() && ex.lvm.is_empty());
    let names: Vec<&str> = ex.partitions.iter().map(|(p, _)| p.name.as_str()).collect();
    assert_eq!(names, ["d-bios", "d-esp", "d-boot", "d-root"]);
    let root = ex
        .filesystems
        .iter()
        .find(|(f, _)| f.mount.as_ref().is_some_and(|m| m.as_str() == "/"))
        .unwrap();
    assert_eq!(
        (root.0.device.as_str(), root.0.fstype),
        ("d-root", FsType::Xfs)
    );
    let boot = ex
        .filesystems
        .iter()
        .find(|(f, _)| f.mount.as_ref().is_some_and(|m| m.as_str() == "/boot"))
        .unwrap();
    assert_eq!(boot.0.device.as_str(), "d-boot");
    let esp = ex
        .filesystems
        .iter()
        .find(|(f, _)| f.device.as_str() == "d-esp")
        .unwrap();
    assert_eq!(
        esp.0.options,
        ["umask=0077"],
        "a lone disk's ESP is not optional"
    );
}

#[test]
fn expansion_round_trips_through_the_explicit_form() {
    let doc = parse(DOC2).unwrap();
    let explicit = expand(&doc).unwrap();
    assert!(explicit.storage.as_ref().unwrap().layout.is_none());
    let yaml = serde_norway::to_string(&explicit).unwrap();
    let back = check(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let again = expand_storage(&back).unwrap().to_storage();
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(explicit.storage.as_ref().unwrap()).unwrap()
    );
    let json = serde_json::to_string(&explicit).unwrap();
    check(&json).unwrap();
}

#[test]
fn json_input_gives_paths_and_lines() {
    let e = parse(r#"{"version": 1, "host": {"hostname": "h"}, "disks": [{"name": "a", "match": {"serial": 5}}]}"#).unwrap_err();
    assert_eq!(e.path, "disks[0].match.serial");
    assert!(e.message.contains("expected a string"), "{e}");
    assert!(e.message.contains("line 1"), "{e}");
    let e =
        parse("{\"version\": 1,\n \"host\": {\"hostname\": \"h\", \"colour\": 1}, \"disks\": []}")
            .unwrap_err();
    assert_eq!(e.path, "host.colour");
    assert!(
        e.message
            .contains("unknown field; expected hostname or instance_id"),
        "{e}"
    );
    assert!(e.message.contains("line 2"), "{e}");
}

#[test]
fn yaml_errors_carry_line_numbers() {
    let e = parse(
        "version: 1\nhost:\n  hostname: h\ndisks:\n  - name: a\n    match: { serial: [1] }\n",
    )
    .unwrap_err();
    assert_eq!(e.path, "disks[0].match.serial");
    assert!(e.message.contains("line 6"), "{e}");
    let e = parse("version: 1\nhost: {hostname: 'h'\n").unwrap_err();
    assert!(e.message.contains("not well-formed"), "{e}");
}

#[test]
fn schema_is_strict_and_lists_every_top_level_key() {
    let s = json_schema();
    assert_eq!(s["additionalProperties"], false);
    let props = s["properties"].as_object().unwrap();
    for k in [
        "version",
        "host",
        "disks",
        "storage",
        "image",
        "configdrive",
        "boot",
        "report",
        "finish",
    ] {
        assert!(props.contains_key(k), "schema lacks {k}");
    }
    let required: Vec<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["version", "host", "disks"]);
}

/// Both product.md documents validate against the schema, checked by Python's jsonschema
/// (an independent implementation); a document with an unknown field does not.
#[test]
fn product_documents_validate_against_the_schema_with_python_jsonschema() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, serde_json::to_string(&json_schema()).unwrap()).unwrap();
    let script = "import sys, json, yaml, jsonschema\n\
        s = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(s)\n\
        d = yaml.safe_load(open(sys.argv[2]))\n\
        jsonschema.validate(d, s, cls=jsonschema.Draft202012Validator)\n";
    let run = |doc: &str| {
        let f = dir.path().join("doc.yaml");
        std::fs::write(&f, doc).unwrap();
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&schema)
            .arg(&f)
            .output()
            .unwrap()
    };
    for doc in [DOC1, DOC2] {
        let out = run(doc);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&DOC1.replace("finish: reboot", "finish: reboot\nbogus: 1"));
    assert!(
        !out.status.success(),
        "the schema must refuse unknown fields"
    );
}

/// (document, expected path, key phrase of the message)
const MALFORMED: &[(&str, &str, &str)] = &[
    ("version: 2\nhost: {hostname: h}\ndisks: []", "version", "expected 1, got 2"),
    ("version: '1'\nhost: {hostname: h}\ndisks: []", "version", "expected 1"),
    ("host: {hostname: h}\ndisks: []", "version", "required, but missing"),
    ("version: 1\ndisks: []", "host", "required, but missing"),
    ("version: 1\nhost: {hostname: h}\ndisks: []\ncolour: blue", "colour", "unknown field; expected one of version, host"),
    ("version: 1\nhost: {hostname: h, fqdn: x}\ndisks: []", "host.fqdn", "unknown field"),
    ("version: 1\nhost: {hostname: web_01}\ndisks: []", "host.hostname", "expected a host name"),
    ("version: 1\nhost: {hostname: h}\ndisks: []", "disks", "at least one disk"),
    ("version: 1\nhost: {hostname: h}\ndisks: {a: 1}", "disks", "expected a sequence"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {colour: red}}]", "disks[0].match.colour", "unknown field"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {min_size: 4 parsecs}}]", "disks[0].match.min_size", "expected a size"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {min_size: -5}}]", "disks[0].match.min_size", "negative"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: a, match: {}}]", "disks[1].name", "used twice"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: 'a b', match: {}}]", "disks[0].name", "expected a name"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {min_size: 8GiB, max_size: 4GiB}}]", "disks[0].match.max_size", "below min_size"),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nstorage: {partitions: [{name: p, disk: c, size: 1GiB}]}",
        "storage.partitions[0].disk",
        "unknown disk \"c\"; known: a, b",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB, type: ntfs}]}",
        "storage.partitions[0].type",
        "expected a partition type",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: lots}]}",
        "storage.partitions[0].size",
        "expected a size such as 512MiB",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: -1}]}",
        "storage.partitions[0].size",
        "negative",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: rest}, {name: q, disk: a, size: rest}]}",
        "storage.partitions[1].size",
        "only one partition per disk can take the rest",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}, {name: p, disk: a, size: 1GiB}]}",
        "storage.partitions[1].name",
        "already used by storage.partitions[0]",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], luks: [{name: p, device: p, recovery_passphrase: x}]}",
        "storage.luks[0].name",
        "share one namespace",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}, {name: q, disk: a, size: 1GiB}], \
         filesystems: [{device: p, type: ext4, mount: /srv}, {device: q, type: xfs, mount: /srv}]}",
        "storage.filesystems[1].mount",
        "mount point /srv is already used by storage.filesystems[0]",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], filesystems: [{device: p, type: ext5}]}",
        "storage.filesystems[0].type",
        "expected one of ext4, xfs, vfat, swap, got \"ext5\"",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], filesystems: [{device: p, type: ext4, mount: var}]}",
        "storage.filesystems[0].mount",
        "expected an absolute path",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], filesystems: [{device: nope, type: ext4}]}",
        "storage.filesystems[0].device",
        "unknown device \"nope\"; known: p",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], filesystems: [{device: p, type: ext4}, {device: p, type: xfs}]}",
        "storage.filesystems[1].device",
        "already used by storage.filesystems[0].device",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}, {name: q, disk: a, size: 1GiB}], \
         raid: [{name: md0, level: 1, members: [p, q]}]}",
        "storage.raid[0].members[1]",
        "a mirror needs two distinct disks",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], raid: [{name: md0, level: 4, members: [p]}]}",
        "storage.raid[0].level",
        "expected 0, 1, 5, 6 or 10",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], raid: [{name: md0, level: 1, members: [p], metadata: 0.9}]}",
        "storage.raid[0].metadata",
        "expected \"1.0\" or \"1.2\"",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], \
         luks: [{name: c, device: p, tang: [{url: 'http://t', thumbprint: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}], threshold: 2}]}",
        "storage.luks[0].threshold",
        "threshold 2 is more than the 1 pin(s) given",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], luks: [{name: c, device: p, tang: [{url: 'http://t'}]}]}",
        "storage.luks[0].tang[0].thumbprint",
        "or trust_on_first_use: true",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], luks: [{name: c, device: p}]}",
        "storage.luks[0]",
        "nothing could unlock this volume",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], luks: [{name: c, device: p, tpm2: {pcrs: [7, 24]}}]}",
        "storage.luks[0].tpm2.pcrs[1]",
        "PCRs are 0 to 23",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: p, disk: a, size: 1GiB}], \
         lvm: [{vg: vg0, pvs: [p], volumes: [{name: x, size: rest}, {name: y, size: rest}]}]}",
        "storage.lvm[0].volumes[1].size",
        "only one volume per volume group can take the rest",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {luks: {tang: [{url: 'htp:/x', thumbprint: '<t>'}]}}}",
        "storage.layout.luks.tang[0].url",
        "expected a URL (http:// or https://), got \"htp:/x\"",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {luks: {tang: [{url: 'http://t'}], tpm2: {pcrs: []}, threshold: 3}}}",
        "storage.layout.luks.threshold",
        "between 1 and 2",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {luks: {tang: [{url: 'http://t'}]}}}",
        "storage.layout.luks.tang[0].thumbprint",
        "required",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nstorage: {layout: {mirror: [a, a]}}",
        "storage.layout.mirror[1]",
        "a mirror needs two distinct disks",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nstorage: {layout: {mirror: [a]}}",
        "storage.layout.mirror",
        "exactly two disks",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nstorage: {layout: {mirror: [a, c]}}",
        "storage.layout.mirror[1]",
        "unknown disk \"c\"",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nstorage: {layout: {}}",
        "storage.layout.disk",
        "say which one the layout uses",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {lvm: [{mount: /, size: rest}, {mount: /var, size: rest}]}}",
        "storage.layout.lvm[1].size",
        "only one volume per volume group can take the rest",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {lvm: [{mount: /, size: 1GiB}, {mount: /, size: 1GiB, name: other}]}}",
        "storage.layout.lvm[1].mount",
        "mount point / is already used by storage.layout.lvm[0]",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {lvm: [{swap: true, size: 1GiB}, {swap: true, size: 1GiB}]}}",
        "storage.layout.lvm[1].name",
        "name \"swap\" is already used by storage.layout.lvm[0]",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {lvm: [{swap: true, mount: /swap, size: 1GiB}]}}",
        "storage.layout.lvm[0].mount",
        "a swap volume is not mounted",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {lvm: [{mount: /, size: 1GiB}], color: red}}",
        "storage.layout.color",
        "unknown field; expected one of disk, mirror, raid, luks, lvm, root",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\n\
         storage: {layout: {disk: a}, partitions: [{name: data, disk: a, size: 1GiB}]}",
        "storage.partitions[0].disk",
        "laid out by storage.layout",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\n\
         storage: {layout: {disk: a}, partitions: [{name: a-root, disk: b, size: 1GiB}]}",
        "storage.partitions[0].name",
        "already used by the layout (storage.layout)",
    ),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'http://x/i', format: disk}", "image", "sha256 or sha512"),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'http://x/i', sha256: '<a>', sha512: '<b>'}",
        "image.sha512",
        "not both",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'http://x/i', sha256: abc123}",
        "image.sha256",
        "expected a SHA-256 digest (64 hex digits), got \"abc123\"",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'ftp://x/i', sha256: '<a>'}",
        "image.url",
        "expected a URL (http://, https://, file:///path or oci://registry/repository:tag@sha256:<digest>)",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'oci://reg.example/Os/disk:1', sha256: '<a>'}",
        "image.url",
        "repository component \"Os\" is not lower-case",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'http://x/i', mirrors: ['oci://reg.example/os/disk'], sha256: '<a>'}",
        "image.mirrors[0]",
        "names neither a tag nor a digest",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'http://x/i', sha256: '<a>', auth: {token: t}}",
        "image.auth",
        "image.url must be an oci:// reference",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'oci://reg.example/os/disk:1', signature: {url: 'http://s/x.sig', lookaside: 'http://s/store'}}",
        "image.signature",
        "not both",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'oci://reg.example/os/disk:1', signature: {keys: []}}",
        "image.signature",
        "give url (a detached signature over the file) or lookaside",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'http://x/i', signature: {lookaside: 'http://s/store'}}",
        "image.signature.lookaside",
        "image.url must be an oci:// reference",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'oci://reg.example/os/disk:1', sha256: '<a>', auth: {username: u}}",
        "image.auth.password",
        "a username needs its password",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {}}\nimage: {url: 'oci://reg.example/os/app:1', format: rootfs}",
        "image.url",
        "a container image is pinned by its manifest digest: oci://reg.example/os/app@sha256:<manifest digest>",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {}}\nimage: {url: 'oci://reg.example/os/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', sha256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb, format: rootfs}",
        "image.sha256",
        "give the manifest digest of image.url (sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa) or nothing",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {}}\nimage: {url: 'oci://reg.example/os/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', format: rootfs, mirrors: ['http://x/app.tar']}",
        "image.mirrors[0]",
        "a mirror must be an oci:// reference",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {}}\nimage: {url: 'oci://reg.example/os/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', format: rootfs, signature: {url: 'http://x/s.minisig'}}",
        "image.signature.url",
        "a detached signature covers one file",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {}}\nimage: {url: 'oci://reg.example/os/app:v1', format: rootfs, sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, signature: {lookaside: 'http://x/sigstore'}}",
        "image.sha256",
        "the manifest digest its registry signature signs pins it",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'http://x/i', sha256: '<a>', format: rootfs}",
        "image.format",
        "onto the filesystem mounted at /",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nimage: {url: 'http://x/i', sha256: '<a>'}",
        "image.target",
        "say which one the disk image goes to",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nimage: {url: 'http://x/i', sha256: '<a>', format: tarball}",
        "image.format",
        "expected one of disk, rootfs, filesystem",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {}}\nimage: {url: 'http://x/i', sha256: '<a>', target: a}",
        "image.target",
        "a whole-disk image brings its own partition table",
    ),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nreport: {url: 'http://r', heartbeat: 0}", "report.heartbeat", "at least 1"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nreport: {url: 'http://r', heartbeat: soon}", "report.heartbeat", "expected u64"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nfinish: explode", "finish", "expected one of reboot, poweroff, kexec, none"),
    (
        "version: 1\nhost: {hostname: h, instance_id: i-1}\ndisks: [{name: a, match: {}}]\nconfigdrive: {meta_data: {instance-id: i-2}}",
        "configdrive.meta_data.instance-id",
        "differs from host.instance_id",
    ),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nconfigdrive: {format: iso}", "configdrive.format", "expected nocloud or config-2, got \"iso\""),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nboot: {finalize: [[]]}", "boot.finalize[0]", "at least the program"),
    ("version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nboot: {kernel_args: 5}", "boot.kernel_args", "expected a list of kernel arguments"),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}, {name: b, match: {}}]\nstorage: {partitions: [{name: m, disk: a, size: 1GiB, type: raid}, {name: n, disk: b, size: 1GiB, type: raid}], raid: [{name: md0, level: 1, members: [m, n]}]}\nimage: {url: 'http://x/i', sha256: '<a>', target: a}",
        "storage.partitions[0]",
        "it can hold a filesystem or a LUKS volume, not be a member of storage.raid[0]",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: d, disk: a, size: rest}]}\nimage: {url: 'http://x/i', sha256: '<a>', grow: true}",
        "image.grow",
        "partition \"d\" (storage.partitions[0]) takes the rest of disk \"a\"",
    ),
    (
        "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {partitions: [{name: d, disk: a, size: 1GiB}], filesystems: [{device: d, type: xfs, mount: /data}]}\nimage: {url: 'http://x/i', sha256: '<a>'}",
        "storage.filesystems[0].mount",
        "a disk image brings its own /etc/fstab",
    ),
];

#[test]
fn malformed_documents_name_the_path_and_say_what_was_expected() {
    assert!(MALFORMED.len() >= 30);
    let mut failures = Vec::new();
    for (text, path, phrase) in MALFORMED {
        match check(text) {
            Ok(_) => failures.push(format!("accepted: {text}")),
            Err(e) if e.path != *path || !e.message.contains(phrase) => {
                failures.push(format!("{text}\n  want {path}: …{phrase}…\n  got  {e}"))
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} wrong:\n{}",
        failures.len(),
        MALFORMED.len(),
        failures.join("\n")
    );
}

#[test]
fn json_and_yaml_give_the_same_path() {
    let yaml = "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\nstorage: {layout: {luks: {tang: [{url: 'htp:/x'}]}}}";
    let json = r#"{"version": 1, "host": {"hostname": "h"}, "disks": [{"name": "a", "match": {}}],
        "storage": {"layout": {"luks": {"tang": [{"url": "htp:/x"}]}}}}"#;
    for text in [yaml, json] {
        let e = parse(text).unwrap_err();
        assert_eq!(e.path, "storage.layout.luks.tang[0].url");
        assert!(e.to_string().starts_with("storage.layout.luks.tang[0].url: expected a URL (http:// or https://), got \"htp:/x\""), "{e}");
    }
}

#[test]
fn kernel_args_take_a_string_or_a_list_and_metadata_a_yaml_number() {
    let base = "version: 1\nhost: {hostname: h}\ndisks: [{name: a, match: {}}]\n";
    let d = check(&format!(
        "{base}boot: {{kernel_args: 'console=ttyS0 quiet'}}"
    ))
    .unwrap();
    assert_eq!(d.boot.unwrap().kernel_args.0, ["console=ttyS0", "quiet"]);
    let d = check(&format!("{base}boot: {{kernel_args: [console=ttyS0]}}")).unwrap();
    assert_eq!(d.boot.unwrap().kernel_args.0, ["console=ttyS0"]);
    let d = parse(&format!(
        "{base}storage: {{raid: [{{name: m, level: 1, members: [x, y], metadata: 1.0}}]}}"
    ))
    .unwrap();
    assert_eq!(d.storage.unwrap().raid[0].metadata, MdMetadata::V1_0);
}

/// Regression (cargo fuzz, target `document`): a mount point with characters a volume
/// name may not hold derived an invalid volume name (a debug assertion, and an LV name
/// lvcreate would refuse).
#[test]
fn odd_mount_points_derive_valid_volume_names() {
    let text = "version: 1\nhost: { hostname: h1 }\ndisks:\n  - { name: a, match: { max_size: 10GiB } }\n\
                storage:\n  layout:\n    lvm:\n      - { mount: /, size: 1GiB }\n      - { mount: \"/v`r\", size: 1GiB }\n      \
                - { mount: /.cache, size: 1GiB }\n      - { mount: \"/ü\", size: 1GiB }\n";
    let doc = parse(text).unwrap();
    let _ = validate_all(&doc);
    let lvm = doc
        .storage
        .as_ref()
        .unwrap()
        .layout
        .as_ref()
        .unwrap()
        .lvm
        .as_ref()
        .unwrap();
    let names: Vec<String> = lvm.iter().filter_map(lv_name_for).collect();
    assert_eq!(names, ["root", "v_r", "lv.cache", "lv_"]);
    let _ = expand(&doc);
}

#[test]
fn expires_is_an_rfc3339_time_named_by_its_path() {
    let base = "version: 1\nhost: {hostname: h}\ndisks: []\n";
    let doc = parse(&format!("{base}expires: 2026-12-31T00:00:00Z\n")).unwrap();
    assert_eq!(
        doc.expires.as_ref().map(Timestamp::unix_seconds),
        Some(1_798_675_200)
    );
    let e = parse(&format!("{base}expires: 31/12/2026\n")).unwrap_err();
    assert_eq!(e.path, "expires");
    assert!(e.message.contains("RFC 3339"), "{e}");
    let schema = serde_json::to_string(&crate::schema::of(crate::schema::Kind::Document)).unwrap();
    assert!(schema.contains("\"expires\""), "{schema}");
}

#[test]
fn a_container_image_is_pinned_by_its_manifest_digest_alone_or_repeated() {
    let doc = |digest: &str| {
        format!(
            "version: 1\nhost: {{hostname: h}}\ndisks: [{{name: a, match: {{}}}}]\nstorage: {{layout: {{}}}}\nimage: {{url: 'oci://reg.example/os/app:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', format: rootfs{digest}}}"
        )
    };
    for d in [
        "",
        ", sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ", sha256: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        check(&doc(d)).unwrap_or_else(|e| panic!("{d}: {e}"));
    }
}
