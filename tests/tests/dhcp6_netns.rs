//! imprint's IPv6 client against a real server, without QEMU: two network namespaces
//! joined by a veth pair, `dnsmasq` in one (RA with RDNSS and DNSSL, DHCPv6), and
//! `imprint net-probe` (the ramdisk's IPv6 code behind a hidden command) in the other.
//! Real packets both ways; nothing leaves the namespaces (ULA addresses only). Root.

use imprint_tests::fixtures::{imprint_bin, sh};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Two namespaces, a veth pair, dnsmasq; everything is removed when dropped.
struct Lab {
    srv: String,
    cli: String,
    dnsmasq: Child,
    dir: tempfile::TempDir,
}

impl Lab {
    /// `range` is dnsmasq's `--dhcp-range` for the server's link `vs`.
    fn start(tag: &str, range: &str) -> Lab {
        let (srv, cli) = (format!("imp6s-{tag}"), format!("imp6c-{tag}"));
        for ns in [&srv, &cli] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            sh("ip", &["netns", "add", ns]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        sh(
            "ip",
            &[
                "-n", &srv, "link", "add", "vs", "type", "veth", "peer", "name", "vc", "netns",
                &cli,
            ],
        );
        sh(
            "ip",
            &[
                "-n",
                &srv,
                "addr",
                "add",
                "fd42:2::1/64",
                "dev",
                "vs",
                "nodad",
            ],
        );
        sh("ip", &["-n", &srv, "link", "set", "vs", "up"]);
        sh("ip", &["-n", &cli, "link", "set", "vc", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let p = |f: &str| dir.path().join(f).display().to_string();
        let dnsmasq = Command::new("ip")
            .args(["netns", "exec", &srv, "dnsmasq", "--keep-in-foreground"])
            .args([
                "--conf-file=/dev/null",
                "--interface=vs",
                "--bind-interfaces",
            ])
            .args(["--no-resolv", "--no-hosts", "--port=0", "--enable-ra"])
            .arg(format!("--dhcp-range={range}"))
            .args(["--dhcp-option=option6:dns-server,[fd42:2::1]"])
            .args(["--dhcp-option=option6:domain-search,prov.test"])
            .arg(format!("--pid-file={}", p("pid")))
            .arg(format!("--dhcp-leasefile={}", p("leases")))
            .arg(format!("--log-facility={}", p("log")))
            .arg("--log-dhcp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (install dnsmasq-base)");
        Lab {
            srv,
            cli,
            dnsmasq,
            dir,
        }
    }

    /// `imprint net-probe` in the client namespace, waiting at most `secs`.
    fn run_probe(&self, mode: &str, secs: u32) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.cli])
            .arg(imprint_bin())
            .args(["-v", "net-probe", "--iface", "vc", "--mode", mode])
            .args(["--timeout", &secs.to_string()])
            .output()
            .unwrap()
    }

    /// [`Lab::run_probe`]'s JSON, or panics with both logs.
    fn probe(&self, mode: &str) -> serde_json::Value {
        let out = self.run_probe(mode, 30);
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "net-probe failed: {}\n{}\n--- dnsmasq ---\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("net-probe prints JSON")
    }

    fn client_addresses(&self) -> String {
        sh("ip", &["-n", &self.cli, "-6", "addr", "show", "dev", "vc"])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.dnsmasq.kill();
        let _ = self.dnsmasq.wait();
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn root() -> bool {
    uid() == 0 && Path::new("/usr/sbin/dnsmasq").exists()
}

fn uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().and_then(|u| u.parse().ok()))
        .unwrap_or(u32::MAX)
}

#[test]
fn stateful_dhcpv6_gives_an_address_dns_and_search_list() {
    assert!(root(), "needs root and dnsmasq (dnsmasq-base)");
    let lab = Lab::start("sf", "::100,::1ff,constructor:vs,64,1h");
    let r = lab.probe("ra");
    assert_eq!(r["how"], "dhcp6", "{r}");
    let addr: std::net::Ipv6Addr = r["address"].as_str().unwrap().parse().unwrap();
    let seg = addr.segments();
    assert!(
        seg[..4] == [0xfd42, 2, 0, 0] && (0x100..=0x1ff).contains(&seg[7]),
        "an address from the range: {r}"
    );
    assert_eq!(r["prefix"], 128, "DHCPv6 addresses are /128: {r}");
    assert!(r["gateway"].as_str().unwrap().starts_with("fe80::"), "{r}");
    assert_eq!(r["dns"], serde_json::json!(["fd42:2::1"]), "{r}");
    assert_eq!(r["search"], serde_json::json!(["prov.test"]), "{r}");
    let ip = lab.client_addresses();
    assert!(ip.contains(&format!("{addr}/128")), "{ip}");
    let log = std::fs::read_to_string(lab.dir.path().join("log")).unwrap();
    assert!(
        log.contains("DHCPREPLY") && log.contains(&addr.to_string()),
        "dnsmasq leased it: {log}"
    );
}

/// On a managed network (prefix without A): `ip=auto6` finds no address and says so;
/// `ip=either6` then falls back to DHCPv6.
#[test]
fn auto6_fails_on_a_managed_network_and_either6_falls_back_to_dhcpv6() {
    assert!(root(), "needs root and dnsmasq (dnsmasq-base)");
    let lab = Lab::start("ei", "::100,::1ff,constructor:vs,64,1h");
    let out = lab.run_probe("auto6", 5);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no SLAAC prefix: {err}");
    assert!(
        err.contains("vc: no usable IPv6 address within 5 s"),
        "the interface and the cause are named: {err}"
    );
    let r = lab.probe("either6");
    assert_eq!(r["how"], "dhcp6", "{r}");
    assert_eq!(r["prefix"], 128, "{r}");
}

#[test]
fn stateless_dhcpv6_and_rdnss_with_a_slaac_address() {
    assert!(root(), "needs root and dnsmasq (dnsmasq-base)");
    let lab = Lab::start("sl", "::,constructor:vs,ra-stateless,64,1h");
    let r = lab.probe("ra");
    assert_eq!(r["how"], "slaac", "{r}");
    assert!(
        r["address"].as_str().unwrap().starts_with("fd42:2::"),
        "{r}"
    );
    assert_eq!(r["prefix"], 64, "{r}");
    assert_eq!(r["dns"], serde_json::json!(["fd42:2::1"]), "{r}");
    assert_eq!(r["search"], serde_json::json!(["prov.test"]), "{r}");
    let log = std::fs::read_to_string(lab.dir.path().join("log")).unwrap();
    assert!(
        log.contains("INFORMATION-REQUEST"),
        "an Information-request: {log}"
    );
}
