//! `/etc/resolv.conf` from every source at once: DHCPv4 leases (written by the udhcpc
//! hook to `/run/imprint/lease-<dev>`) and IPv6 (RDNSS/DNSSL from the router, DHCPv6),
//! recorded in `/run/imprint/lease6-<dev>`. Rewritten whenever either family finishes,
//! so the family that answers last does not drop the other's servers.

use crate::runner::log;
use std::sync::Mutex;

const RUN: &str = "/run/imprint";
/// musl and glibc read at most three nameservers.
const MAX_SERVERS: usize = 3;

static LOCK: Mutex<()> = Mutex::new(());

/// Records IPv6 DNS servers and search domains for `dev` and rewrites resolv.conf.
pub fn record_v6(dev: &str, dns: &[std::net::Ipv6Addr], search: &[String]) {
    let text = format!(
        "dns={}\ndomain={}\n",
        dns.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        search.join(" ")
    );
    let _ = std::fs::create_dir_all(RUN);
    if let Err(e) = std::fs::write(format!("{RUN}/lease6-{dev}"), text) {
        log::warn(&format!("{dev}: recording its IPv6 DNS servers: {e}"));
    }
    rewrite();
}

/// Rewrites `/etc/resolv.conf` from every lease file (none: left as it is).
pub fn rewrite() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut leases: Vec<(String, String)> = std::fs::read_dir(RUN)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("lease")
                        .then(|| std::fs::read_to_string(e.path()).ok().map(|t| (name, t)))
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default();
    // DHCPv4 (`lease-`) first, as before IPv6 existed here; then `lease6-`.
    leases.sort();
    let texts: Vec<&str> = leases.iter().map(|(_, t)| t.as_str()).collect();
    if let Some(text) = compose(&texts) {
        if let Err(e) = std::fs::write("/etc/resolv.conf", text) {
            log::warn(&format!("writing /etc/resolv.conf: {e}"));
        }
    }
}

/// resolv.conf text from lease files' `dns=` and `domain=` lines (space-separated);
/// `None` when none names a server.
pub fn compose(leases: &[&str]) -> Option<String> {
    let (mut servers, mut search): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    for l in leases {
        for line in l.lines() {
            let (list, words) = match line.split_once('=') {
                Some(("dns", w)) => (&mut servers, w),
                Some(("domain", w)) => (&mut search, w),
                _ => continue,
            };
            for w in words.split_whitespace() {
                if !list.contains(&w) {
                    list.push(w);
                }
            }
        }
    }
    if servers.is_empty() {
        return None;
    }
    let mut text = String::new();
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers.iter().take(MAX_SERVERS) {
        text.push_str(&format!("nameserver {s}\n"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_servers_and_search_domains_are_merged() {
        let v4 = "ip=10.0.2.15\nmask=24\nrouter=10.0.2.2\ndns=10.0.2.3\nhostname=\ndomain=lab\n";
        let v6 = "dns=fd42:2::1 10.0.2.3\ndomain=prov.test lab\n";
        assert_eq!(
            compose(&[v4, v6]).unwrap(),
            "search lab prov.test\nnameserver 10.0.2.3\nnameserver fd42:2::1\n"
        );
        assert_eq!(compose(&["dns=\ndomain=x\n"]), None, "no server: no file");
        let many = "dns=fd00::1 fd00::2 fd00::3 fd00::4\n";
        assert_eq!(compose(&[many]).unwrap().lines().count(), 3);
    }
}
