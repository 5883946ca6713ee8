//! Network bring-up in the ramdisk: loopback, VLANs, then DHCP (busybox `udhcpc`, with
//! the hook `/etc/imprint/udhcpc.script`) on every link with carrier, or the static
//! `ip=` configuration. Writes `/etc/resolv.conf` and `/etc/hosts`.

use super::cmdline::{Cmdline, IpConfig, StaticIp, V6Mode};
use super::{net6, resolv};
use crate::runner::{self, log};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long links get to report carrier.
pub const CARRIER_WAIT: Duration = Duration::from_secs(20);
/// How long DHCPv4 still gets once IPv6 is up first (a dual-stack network whose DHCPv4
/// server is slower than the router).
const V4_GRACE: Duration = Duration::from_secs(3);
/// Set when IPv6 came up on some link (DHCPv4's retries then log quietly).
static IPV6_UP: AtomicBool = AtomicBool::new(false);
/// Set when [`bring_up`] returned: a family finishing later logs for itself.
static NET_UP: AtomicBool = AtomicBool::new(false);
const UDHCPC_SCRIPT: &str = "/etc/imprint/udhcpc.script";

/// Why the network is not up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no network interface was found (is the NIC's driver in the ramdisk?)")]
    NoInterface,
    #[error("no network link has carrier after {0} s (is a cable connected? interfaces: {1})")]
    NoCarrier(u64, String),
    #[error("DHCP got no lease on {0} in {1} s (is a DHCP server on that network? imprint.net_timeout= waits longer)")]
    NoLease(String, u64),
    #[error("no link got an address: {0}")]
    NoAddress(String),
    #[error("configuring {what}: {source}")]
    Command {
        what: String,
        source: runner::RunError,
    },
}

/// What came up.
#[derive(Debug, Clone, Default)]
pub struct NetState {
    /// Interfaces with an address, e.g. `eth0 10.0.2.15/24 (dhcp)`.
    pub configured: Vec<String>,
}

fn ip(args: &[&str], what: &str) -> Result<(), NetError> {
    runner::run("ip", args, Duration::from_secs(10))
        .map(|_| ())
        .map_err(|source| NetError::Command {
            what: what.to_string(),
            source,
        })
}

/// Interfaces other than loopback, sorted.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|n| n != "lo");
    v.sort();
    v
}

fn has_carrier(dev: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(dev).join("carrier"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
}

/// Brings links up and waits (bounded) until some have carrier; returns those.
fn wait_for_carrier(devs: &[String], limit: Duration) -> Vec<String> {
    for d in devs {
        let _ = ip(&["link", "set", "dev", d, "up"], d);
    }
    let start = Instant::now();
    let mut first_seen: Option<Instant> = None;
    loop {
        let up: Vec<String> = devs.iter().filter(|d| has_carrier(d)).cloned().collect();
        // Once one link is up, give the others a short grace period, not the whole wait.
        if !up.is_empty() {
            let seen = *first_seen.get_or_insert_with(Instant::now);
            if up.len() == devs.len() || seen.elapsed() > Duration::from_secs(3) {
                return up;
            }
        }
        if start.elapsed() > limit {
            return up;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Configures the network as the command line says. Loopback always comes up.
pub fn bring_up(cmdline: &Cmdline) -> Result<NetState, NetError> {
    ip(&["link", "set", "dev", "lo", "up"], "loopback")?;
    if cmdline.ip.contains(&IpConfig::Off) {
        log::info("network: off (ip=off)");
        return Ok(NetState::default());
    }
    for v in &cmdline.vlans {
        let _ = ip(&["link", "set", "dev", &v.parent, "up"], &v.parent);
        let id = v.id.to_string();
        ip(
            &[
                "link", "add", "link", &v.parent, "name", &v.name, "type", "vlan", "id", &id,
            ],
            &format!("VLAN {}", v.name),
        )?;
    }
    let devs = interfaces();
    if devs.is_empty() {
        return Err(NetError::NoInterface);
    }
    let carrier = wait_for_carrier(&devs, CARRIER_WAIT);
    if carrier.is_empty() {
        return Err(NetError::NoCarrier(CARRIER_WAIT.as_secs(), devs.join(", ")));
    }
    let mut state = NetState::default();
    let statics: Vec<&StaticIp> = cmdline
        .ip
        .iter()
        .filter_map(|c| {
            if let IpConfig::Static(s) = c {
                Some(s)
            } else {
                None
            }
        })
        .collect();
    for s in &statics {
        let dev = s.device.clone().unwrap_or_else(|| carrier[0].clone());
        configure_static(s, &dev)?;
        state
            .configured
            .push(format!("{dev} {}/{} (static)", s.address, s.prefix));
    }
    if statics.is_empty() {
        let (v4, v6) = dynamic_plan(&cmdline.ip, &carrier);
        state.configured = dynamic(&v4, &v6, cmdline.net_timeout, cmdline.net6_timeout)?;
    }
    write_hosts();
    for c in &state.configured {
        log::info(&format!("network: {c}"));
    }
    Ok(state)
}

/// The links for DHCPv4 and for IPv6 (with its mode) from the dynamic `ip=` settings;
/// none given means both families on every link with carrier.
pub fn dynamic_plan(ip: &[IpConfig], carrier: &[String]) -> (Vec<String>, Vec<(String, V6Mode)>) {
    let on = |d: &Option<String>| d.clone().map(|d| vec![d]).unwrap_or(carrier.to_vec());
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    let mut any = ip.is_empty();
    for c in ip {
        match c {
            IpConfig::Dhcp { device } => v4.extend(on(device)),
            IpConfig::Any { device } => {
                v4.extend(on(device));
                v6.extend(on(device).into_iter().map(|d| (d, V6Mode::Ra)));
            }
            IpConfig::V6 { device, mode } => v6.extend(on(device).into_iter().map(|d| (d, *mode))),
            IpConfig::Static(_) | IpConfig::Off => any = false,
        }
    }
    if any {
        v4 = carrier.to_vec();
        v6 = carrier.iter().map(|d| (d.clone(), V6Mode::Ra)).collect();
    }
    v4.dedup();
    v6.dedup_by(|a, b| a.0 == b.0);
    (v4, v6)
}

/// One family's outcome, from its thread.
enum Outcome {
    V4(Vec<String>),
    V6(Result<net6::V6Config, net6::Net6Error>),
}

/// DHCPv4 and IPv6 in parallel: the network is up as soon as either family is usable.
/// DHCPv4 first: return at once (dual-stack is as fast as before). IPv6 first: give
/// DHCPv4 a few seconds more, then go on; a late lease still configures its link.
fn dynamic(
    v4: &[String],
    v6: &[(String, V6Mode)],
    v4_timeout: Duration,
    v6_timeout: Duration,
) -> Result<Vec<String>, NetError> {
    let (tx, rx) = std::sync::mpsc::channel();
    if !v4.is_empty() {
        let (devs, tx) = (v4.to_vec(), tx.clone());
        std::thread::spawn(move || {
            let got = dhcp_until(&devs, v4_timeout);
            resolv::rewrite();
            if NET_UP.load(Ordering::Relaxed) {
                for c in &got {
                    log::info(&format!("network: {c}, after IPv6 was already up"));
                }
            }
            let _ = tx.send(Outcome::V4(got));
        });
    }
    if !v6.is_empty() {
        log::info(&format!(
            "network: IPv6 on {}",
            v6.iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (dev, mode) in v6.iter().cloned() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = net6::configure(&dev, mode, v6_timeout);
            match &r {
                Ok(c) => {
                    resolv::record_v6(&c.dev, &c.dns, &c.search);
                    if NET_UP.load(Ordering::Relaxed) {
                        log::info(&format!("network: {}", c.summary()));
                    }
                }
                // Before the network is up the failure is part of its error; after, say it.
                Err(e) if NET_UP.load(Ordering::Relaxed) => {
                    log::info(&format!("network: {e}; IPv6 stays unconfigured on {dev}"))
                }
                Err(_) => {}
            }
            let _ = tx.send(Outcome::V6(r));
        });
    }
    drop(tx);
    let (mut configured, mut failures) = (Vec::new(), Vec::new());
    let mut v4_pending = !v4.is_empty();
    let mut grace: Option<Instant> = None;
    loop {
        let msg = match grace {
            Some(until) => match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(m) => m,
                Err(_) => break,
            },
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        match msg {
            Outcome::V4(got) => {
                v4_pending = false;
                if got.is_empty() {
                    failures
                        .push(NetError::NoLease(v4.join(", "), v4_timeout.as_secs()).to_string());
                } else {
                    configured.extend(got);
                    break;
                }
            }
            Outcome::V6(Ok(c)) => {
                IPV6_UP.store(true, Ordering::Relaxed);
                configured.push(c.summary());
                if !v4_pending {
                    break;
                }
                grace.get_or_insert_with(|| Instant::now() + V4_GRACE);
            }
            Outcome::V6(Err(e)) => failures.push(e.to_string()),
        }
    }
    if configured.is_empty() {
        return Err(NetError::NoAddress(failures.join("; ")));
    }
    NET_UP.store(true, Ordering::Relaxed);
    if v4_pending {
        log::info(&format!(
            "network: IPv6 is up; DHCPv4 on {} goes on in the background",
            v4.join(", ")
        ));
    }
    Ok(configured)
}

fn configure_static(s: &StaticIp, dev: &str) -> Result<(), NetError> {
    let cidr = format!("{}/{}", s.address, s.prefix);
    let family = if s.address.is_ipv4() { "-4" } else { "-6" };
    ip(&["link", "set", "dev", dev, "up"], dev)?;
    ip(
        &[family, "addr", "add", &cidr, "dev", dev],
        &format!("address {cidr} on {dev}"),
    )?;
    if let Some(gw) = s.gateway {
        let gw = gw.to_string();
        ip(
            &[family, "route", "add", "default", "via", &gw, "dev", dev],
            &format!("default route via {gw}"),
        )?;
    }
    if !s.dns.is_empty() {
        let text: String = s.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        if let Err(e) = std::fs::write("/etc/resolv.conf", text) {
            log::warn(&format!("writing /etc/resolv.conf: {e}"));
        }
    }
    if let Some(h) = &s.hostname {
        set_hostname(h);
    }
    Ok(())
}

/// DHCP in rounds until a lease or `limit`: a switch port still blocked by spanning
/// tree after the link came up (30-50 s with classic STP) answers on a later round.
fn dhcp_until(devs: &[String], limit: Duration) -> Vec<String> {
    let start = Instant::now();
    log::info(&format!("network: DHCP on {}", devs.join(", ")));
    loop {
        let got = dhcp(devs);
        if !got.is_empty() || start.elapsed() >= limit {
            return got;
        }
        let msg = format!(
            "no DHCP lease yet on {} after {} s; trying again until {} s",
            devs.join(", "),
            start.elapsed().as_secs(),
            limit.as_secs()
        );
        // Once IPv6 carries the run, DHCPv4 retrying in the background is no news.
        if IPV6_UP.load(Ordering::Relaxed) {
            log::debug(&msg);
        } else {
            log::warn(&msg);
        }
        // udhcpc gives up at once on a link without carrier: do not spin.
        std::thread::sleep(Duration::from_secs(2).min(limit.saturating_sub(start.elapsed())));
    }
}

/// Runs udhcpc on each device in parallel; returns the ones that got a lease.
fn dhcp(devs: &[String]) -> Vec<String> {
    let handles: Vec<_> = devs
        .iter()
        .cloned()
        .map(|dev| {
            std::thread::spawn(move || {
                let args = [
                    "-i",
                    dev.as_str(),
                    "-n",
                    "-q",
                    "-f",
                    "-t",
                    "6",
                    "-T",
                    "2",
                    "-s",
                    UDHCPC_SCRIPT,
                ];
                match runner::run("udhcpc", args, Duration::from_secs(40)) {
                    Ok(_) => Some(dev),
                    Err(e) => {
                        log::debug(&format!("DHCP on {dev}: {e}"));
                        None
                    }
                }
            })
        })
        .collect();
    let got: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().ok().flatten())
        .collect();
    got.into_iter()
        .map(|dev| {
            let lease =
                std::fs::read_to_string(format!("/run/imprint/lease-{dev}")).unwrap_or_default();
            let field = |k: &str| {
                lease
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
                    .unwrap_or_default()
            };
            let host = field("hostname");
            if !host.is_empty() {
                set_hostname(&host);
            }
            format!(
                "{dev} {}/{} via {} (dhcp)",
                field("ip"),
                field("mask"),
                field("router")
            )
        })
        .collect()
}

fn set_hostname(name: &str) {
    if let Err(e) = std::fs::write("/proc/sys/kernel/hostname", name) {
        log::warn(&format!("setting the hostname {name}: {e}"));
    }
}

fn write_hosts() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
    if !host.is_empty() && host != "(none)" {
        text.push_str(&format!("127.0.1.1 {host}\n"));
    }
    if let Err(e) = std::fs::write("/etc/hosts", text) {
        log::warn(&format!("writing /etc/hosts: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::ip_arg::parse_ip;

    fn plan(args: &[&str]) -> (Vec<String>, Vec<(String, V6Mode)>) {
        let ip: Vec<IpConfig> = args.iter().map(|a| parse_ip(a).unwrap()).collect();
        dynamic_plan(&ip, &["eth0".to_string(), "eth1".to_string()])
    }

    fn v6(devs: &[&str], mode: V6Mode) -> Vec<(String, V6Mode)> {
        devs.iter().map(|d| (d.to_string(), mode)).collect()
    }

    #[test]
    fn without_ip_both_families_run_on_every_link() {
        let (v4, v6s) = plan(&[]);
        assert_eq!(v4, ["eth0", "eth1"]);
        assert_eq!(v6s, v6(&["eth0", "eth1"], V6Mode::Ra));
        assert_eq!(plan(&["any"]), (v4, v6s));
    }

    #[test]
    fn ip_dhcp_is_ipv4_only_and_the_v6_words_are_ipv6_only() {
        assert_eq!(
            plan(&["dhcp"]),
            (vec!["eth0".into(), "eth1".into()], vec![])
        );
        assert_eq!(
            plan(&["eth1:dhcp6"]),
            (vec![], v6(&["eth1"], V6Mode::Dhcp6))
        );
        assert_eq!(
            plan(&["eth0:dhcp", "eth0:auto6"]),
            (vec!["eth0".into()], v6(&["eth0"], V6Mode::Auto6))
        );
        assert_eq!(
            plan(&["either6"]),
            (vec![], v6(&["eth0", "eth1"], V6Mode::Either6))
        );
    }
}
