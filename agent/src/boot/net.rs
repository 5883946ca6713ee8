//! Network bring-up in the ramdisk: loopback, VLANs, then DHCP (busybox `udhcpc`, with
//! the hook `/etc/imprint/udhcpc.script`) on every link with carrier, or the static
//! `ip=` configuration. Writes `/etc/resolv.conf` and `/etc/hosts`.

use super::cmdline::{Cmdline, IpConfig, StaticIp};
use crate::runner::{self, log};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long links get to report carrier.
pub const CARRIER_WAIT: Duration = Duration::from_secs(20);
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
        let wanted: Vec<String> = match cmdline.ip.iter().find_map(|c| {
            if let IpConfig::Dhcp { device: Some(d) } = c {
                Some(d.clone())
            } else {
                None
            }
        }) {
            Some(d) => vec![d],
            None => carrier.clone(),
        };
        state.configured = dhcp_until(&wanted, cmdline.net_timeout);
        if state.configured.is_empty() {
            return Err(NetError::NoLease(
                wanted.join(", "),
                cmdline.net_timeout.as_secs(),
            ));
        }
    }
    write_hosts();
    for c in &state.configured {
        log::info(&format!("network: {c}"));
    }
    Ok(state)
}

fn configure_static(s: &StaticIp, dev: &str) -> Result<(), NetError> {
    let cidr = format!("{}/{}", s.address, s.prefix);
    ip(&["link", "set", "dev", dev, "up"], dev)?;
    ip(
        &["addr", "add", &cidr, "dev", dev],
        &format!("address {cidr} on {dev}"),
    )?;
    if let Some(gw) = s.gateway {
        let gw = gw.to_string();
        ip(
            &["route", "add", "default", "via", &gw, "dev", dev],
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
        log::warn(&format!(
            "no DHCP lease yet on {} after {} s; trying again until {} s",
            devs.join(", "),
            start.elapsed().as_secs(),
            limit.as_secs()
        ));
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
