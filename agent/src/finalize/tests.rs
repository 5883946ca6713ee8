use super::*;
use crate::plan::*;

fn seed_like() -> (Plan, FinalizePlan) {
    let steps = vec![
        Step::Raid(RaidPlan {
            name: "md-root".into(),
            level: RaidLevel::Raid1,
            metadata: crate::plan::MdMetadata::V1_2,
            members: vec!["/dev/vda5".into(), "/dev/vdb4".into()],
            path: "/dev/md/md-root".into(),
            uuid: "7b7d0d51-cef4-4ff6-ac6d-328639fd5772".into(),
            size_bytes: 10 << 30,
            layout: None,
            chunk_bytes: None,
        }),
        Step::Luks(LuksPlan {
            name: "luks-root".into(),
            device: "/dev/md/md-root".into(),
            path: "/dev/mapper/luks-root".into(),
            cipher: "aes-xts-plain64".into(),
            key_size: 512,
            label: None,
            uuid: "c7817eb5-7e5c-4f0c-9d6e-837def918b32".into(),
            tang: vec![],
            tpm2: None,
            threshold: 1,
            recovery_passphrase: None,
        }),
        Step::Lvm(LvmPlan {
            vg: "vg0".into(),
            pvs: vec!["/dev/mapper/luks-root".into()],
            volumes: vec![LvPlan {
                name: "root".into(),
                path: "/dev/vg0/root".into(),
                size_bytes: Some(4 << 30),
            }],
        }),
        Step::Mkfs(MkfsPlan {
            name: "root".into(),
            device: "/dev/vg0/root".into(),
            fstype: crate::plan::FsType::Xfs,
            label: None,
            uuid: "bc62f174-0fda-4a69-9c16-b98117cfa1ca".into(),
            mount: Some("/".into()),
        }),
    ];
    let plan = Plan {
        host: HostPlan {
            hostname: "db-17".into(),
            instance_id: "i".into(),
        },
        disks: vec![],
        checks: vec![],
        steps,
        report: None,
        finish: Finish::None,
        kernel_args: vec!["console=ttyS0".into()],
    };
    let fin = FinalizePlan {
        fstab: vec!["UUID=bc62f174-0fda-4a69-9c16-b98117cfa1ca / xfs defaults 0 0".into()],
        crypttab: vec![
            "luks-root UUID=c7817eb5-7e5c-4f0c-9d6e-837def918b32 none luks,discard".into(),
        ],
        mdadm: vec![
            "ARRAY /dev/md/md-root metadata=1.2 UUID=7b7d0d51:cef44ff6:ac6d3286:39fd5772".into(),
        ],
        boot_disks: vec![],
        esp_copies: vec![],
        kernel_args: vec!["console=ttyS0".into()],
        commands: vec![],
        command_timeout_secs: 60,
        arch: crate::arch::Arch::X86_64,
    };
    (plan, fin)
}

#[test]
fn families_come_from_id_and_id_like() {
    assert_eq!(
        family("ID=debian\nVERSION_ID=\"12\"\n").unwrap(),
        Family::Debian
    );
    assert_eq!(
        family("ID=ubuntu\nID_LIKE=debian\n").unwrap(),
        Family::Debian
    );
    assert_eq!(
        family("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n").unwrap(),
        Family::Rhel
    );
    assert!(family("ID=alpine\n")
        .unwrap_err()
        .to_string()
        .contains("boot.finalize"));
}

#[test]
fn kernel_command_line_is_derived_per_family() {
    let (plan, fin) = seed_like();
    assert_eq!(
        kernel_cmdline(&plan, &fin, Family::Debian),
        vec!["root=/dev/mapper/vg0-root", "console=ttyS0"]
    );
    assert_eq!(
        kernel_cmdline(&plan, &fin, Family::Rhel),
        vec![
            "root=/dev/mapper/vg0-root",
            "rd.md.uuid=7b7d0d51:cef44ff6:ac6d3286:39fd5772",
            "rd.luks.uuid=c7817eb5-7e5c-4f0c-9d6e-837def918b32",
            "rd.lvm.lv=vg0/root",
            "console=ttyS0"
        ]
    );
    assert_eq!(dm_name("my-vg", "var-log"), "my--vg-var--log");
}

#[test]
fn grub_defaults_keep_the_image_arguments_and_replace_root() {
    let g =
        "GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX=\"console=tty0 root=/dev/sda1 console=ttyS0,115200\"\n";
    let out = grub_defaults(g, &["root=/dev/mapper/vg0-root".into(), "quiet".into()]);
    assert_eq!(out, "GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200 root=/dev/mapper/vg0-root quiet\"\n");
    assert!(grub_defaults("", &["a".into()]).contains("GRUB_CMDLINE_LINUX=\"a\""));
}

#[test]
fn files_carry_fstab_crypttab_and_mdadm_conf() {
    let (_, fin) = seed_like();
    let f = files(
        &fin,
        Family::Debian,
        "",
        &["root=/dev/mapper/vg0-root".into()],
    );
    let get = |p: &str| {
        f.iter()
            .find(|(k, _)| k == p)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert!(get("etc/fstab").contains("UUID=bc62f174-0fda-4a69-9c16-b98117cfa1ca / xfs"));
    assert!(
        get("etc/crypttab").contains("luks,discard,initramfs"),
        "Debian's hook includes it"
    );
    assert!(get("etc/mdadm/mdadm.conf")
        .contains("ARRAY /dev/md/md-root metadata=1.2 UUID=7b7d0d51:cef44ff6"));
    let r = files(&fin, Family::Rhel, "", &[]);
    assert!(r
        .iter()
        .any(|(k, v)| k == "etc/mdadm.conf" && v.contains("ARRAY")));
    assert!(r
        .iter()
        .any(|(k, v)| k == "etc/crypttab" && !v.contains("initramfs")));
}

#[test]
fn ip_dhcp_is_spelled_for_debians_clevis_script() {
    let (plan, mut fin) = seed_like();
    fin.kernel_args = vec!["ip=dhcp".into()];
    let deb = kernel_cmdline(&plan, &fin, Family::Debian);
    assert!(
        deb.contains(&"ip=::::::dhcp".to_string()) && !deb.contains(&"ip=dhcp".to_string()),
        "{deb:?}"
    );
    let rhel = kernel_cmdline(&plan, &fin, Family::Rhel);
    assert!(
        rhel.contains(&"ip=dhcp".to_string()) && rhel.contains(&"rd.neednet=1".to_string()),
        "{rhel:?}"
    );
}

#[test]
fn grub_goes_to_the_first_esp_twice_and_never_writes_nvram() {
    let t = Targets {
        bios_disks: vec!["/dev/sda".into()],
        esps: vec![
            ("/dev/sda2".into(), "/boot/efi".into()),
            ("/dev/sdb2".into(), "/run/imprint-esp1".into()),
        ],
    };
    let cmds = builtin(Family::Debian, Arch::X86_64, &t);
    let installs: Vec<String> = cmds
        .iter()
        .map(|(argv, _)| argv.join(" "))
        .filter(|c| c.contains("x86_64-efi"))
        .collect();
    // The second ESP gets a copy of the first one's EFI tree (`copy_esp`), not an install.
    assert_eq!(
        installs,
        [
            "grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram",
            "grub-install --target=x86_64-efi --efi-directory=/boot/efi --bootloader-id=debian --no-nvram",
        ]
    );
    assert!(cmds.iter().all(|(_, required)| *required));
    let rhel = builtin(Family::Rhel, Arch::X86_64, &t);
    assert!(rhel
        .iter()
        .any(|(a, _)| a.join(" ").contains("grub2-install --target=x86_64-efi --efi-directory=/boot/efi --bootloader-id=redhat --no-nvram")));
}

#[test]
fn arm64_gets_grub_for_arm64_efi_and_no_bios_install() {
    let t = Targets {
        bios_disks: vec!["/dev/vda".into()],
        esps: vec![
            ("/dev/vda1".into(), "/boot/efi".into()),
            ("/dev/vdb1".into(), "/run/imprint-esp1".into()),
        ],
    };
    let cmds: Vec<String> = builtin(Family::Debian, Arch::Aarch64, &t)
        .iter()
        .map(|(argv, _)| argv.join(" "))
        .collect();
    assert_eq!(
        cmds,
        [
            "update-initramfs -u -k all",
            "grub-install --target=arm64-efi --efi-directory=/boot/efi --removable --no-nvram",
            "grub-install --target=arm64-efi --efi-directory=/boot/efi --bootloader-id=debian --no-nvram",
            "update-grub",
        ]
    );
}

#[test]
fn an_esp_copy_replaces_the_tree_with_the_first_esps() {
    let d = tempfile::tempdir().unwrap();
    let from = d.path().join("esp0/EFI");
    let to = d.path().join("esp1/EFI");
    std::fs::create_dir_all(from.join("BOOT")).unwrap();
    std::fs::create_dir_all(from.join("debian")).unwrap();
    std::fs::write(from.join("BOOT/BOOTX64.EFI"), b"loader").unwrap();
    std::fs::write(from.join("debian/grubx64.efi"), b"loader").unwrap();
    std::fs::write(from.join("debian/grub.cfg"), b"search --fs-uuid").unwrap();
    // What an earlier deployment left on the second ESP goes.
    std::fs::create_dir_all(to.join("old")).unwrap();
    std::fs::write(to.join("old/grubx64.efi"), b"stale").unwrap();
    assert_eq!(copy_esp(&from, &to).unwrap(), 3);
    assert!(!to.join("old").exists());
    for f in ["BOOT/BOOTX64.EFI", "debian/grubx64.efi", "debian/grub.cfg"] {
        assert_eq!(
            std::fs::read(from.join(f)).unwrap(),
            std::fs::read(to.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn the_deployed_os_names_its_entries_and_its_vendor_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(deployed_os(dir.path()), (None, None));
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/os-release"),
        "PRETTY_NAME=\"Rocky Linux 9.4 (Blue Onyx)\"\nNAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n",
    )
    .unwrap();
    assert_eq!(
        deployed_os(dir.path()),
        (Some("Rocky Linux".to_string()), Some("redhat"))
    );
}
