//! The two documents product.md says every build must accept verbatim (placeholders
//! included), shared by the agent's unit tests and the integration suites.

/// A single disk, whole-disk image.
pub const WEB_DOC: &str = r#"version: 1
host: { hostname: web-01 }
disks:
  - name: root
    match: { smallest: true, min_size: 4GiB }
image:
  url: http://10.0.2.2:8080/images/web.raw.zst
  sha256: 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b
  format: disk
  target: root
configdrive:
  format: nocloud
  meta_data: { instance-id: web-01 }
  user_data: |
    #cloud-config
    runcmd: [[sh, -c, "echo imprint-ok > /dev/console"]]
  network_config: { version: 2, ethernets: { all: { match: { name: "e*" }, dhcp4: true } } }
report: { url: "http://10.0.2.2:8080/report/web-01", token: "s3cr3t-token" }
finish: reboot
"#;

/// The seed customer's host: mirror, LUKS bound to tang and TPM2, STIG layout, rootfs.
pub const SEED_DOC: &str = r#"version: 1
host: { hostname: db-17 }
disks:
  - { name: a, match: { serial: "SN-A-0001" } }
  - { name: b, match: { serial: "SN-B-0002" } }
storage:
  layout:
    mirror: [a, b]
    luks:
      tang: [{ url: "http://10.0.2.2:7500", thumbprint: "<S256 thumbprint of a signing key>" }]
      tpm2: { pcrs: [] }
      threshold: 2
    lvm:
      - { mount: /,              size: 4GiB,   type: xfs }
      - { mount: /home,          size: 512MiB, type: xfs, options: [nodev, nosuid] }
      - { mount: /tmp,           size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }
      - { mount: /var,           size: 2GiB,   type: xfs, options: [nodev] }
      - { mount: /var/log,       size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }
      - { mount: /var/log/audit, size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }
      - { mount: /var/tmp,       size: 512MiB, type: xfs, options: [nodev, nosuid, noexec] }
      - { swap: true,            size: 256MiB }
image:
  url: http://10.0.2.2:8080/images/debian-12-rootfs.tar.zst
  sha512: "<128 hex digits>"
  format: rootfs
configdrive:
  format: nocloud
  user_data: |
    #cloud-config
    runcmd: [[sh, -c, "echo imprint-ok > /dev/console"]]
report: { url: "http://10.0.2.2:8080/report/db-17", token: "another-token" }
finish: reboot
"#;
