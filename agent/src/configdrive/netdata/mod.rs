//! Network config (netplan v2 or cloud-init v1) → OpenStack `network_data.json`.
//!
//! Only the common cases convert: physical interfaces (by name or MAC) with
//! DHCP and/or static addresses, routes, gateways and nameservers. Anything
//! else (bonds, bridges, VLANs, …) is refused with the key that cannot be
//! expressed, rather than silently dropped; the NoCloud flavour carries those
//! through unchanged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};

use super::ConfigdriveError;

mod v1;
mod v2;

use v1::from_v1;
use v2::from_v2;

/// The network config's `version` (1 or 2), with or without a top-level `network:` wrapper.
pub(super) fn version(net: &Value) -> Result<u64, ConfigdriveError> {
    let root = unwrap(net)?;
    match root.get("version").and_then(Value::as_u64) {
        Some(v @ (1 | 2)) => Ok(v),
        _ => Err(err(
            "version",
            "expected `version: 1` or `version: 2` (cloud-init network config)",
        )),
    }
}

/// The OpenStack `network_data.json` value equivalent to `net`, or an error naming what has no equivalent.
pub(super) fn to_network_data(net: &Value) -> Result<Value, ConfigdriveError> {
    let root = unwrap(net)?;
    let model = match version(net)? {
        1 => from_v1(root)?,
        _ => from_v2(root)?,
    };
    Ok(model.emit())
}

fn unwrap(net: &Value) -> Result<&Map<String, Value>, ConfigdriveError> {
    let map = net
        .as_object()
        .ok_or_else(|| err("", "expected a mapping (cloud-init network config)"))?;
    match map.get("network") {
        Some(inner) if map.len() == 1 => inner
            .as_object()
            .ok_or_else(|| err("network", "expected a mapping")),
        _ => Ok(map),
    }
}

fn err(at: &str, reason: &str) -> ConfigdriveError {
    let at = if at.is_empty() {
        String::new()
    } else {
        format!(".{at}")
    };
    ConfigdriveError::NetworkConfig {
        at,
        reason: reason.to_string(),
    }
}

const NOT_CONVERTIBLE: &str =
    "cannot be expressed in OpenStack network_data.json by imprint; use configdrive format `nocloud` for it";

#[derive(Default)]
struct Model {
    links: Vec<Link>,
    dns: Vec<String>,
    search: Vec<Value>,
}

struct Link {
    id: String,
    name: Option<String>,
    mac: Option<String>,
    mtu: Option<Value>,
    nets: Vec<Net>,
}

struct Net {
    kind: Kind,
    routes: Vec<Route>,
    search: Vec<Value>,
}

enum Kind {
    Dhcp4,
    Dhcp6,
    Static(IpAddr, u8),
}

struct Route {
    dest: IpAddr,
    prefix: u8,
    gateway: IpAddr,
    metric: Option<Value>,
}

impl Link {
    /// Attaches a route to the first static network of the same address family.
    fn add_route(&mut self, route: Route, at: &str) -> Result<(), ConfigdriveError> {
        let net = self
            .nets
            .iter_mut()
            .find(|n| matches!(n.kind, Kind::Static(ip, _) if ip.is_ipv4() == route.dest.is_ipv4()))
            .ok_or_else(|| {
                err(at, "a route or gateway needs a static address of the same family on this interface (network_data.json attaches routes to static networks)")
            })?;
        net.routes.push(route);
        Ok(())
    }
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), ConfigdriveError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(&join(at, k), NOT_CONVERTIBLE)),
        None => Ok(()),
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, ConfigdriveError> {
    v.as_object().ok_or_else(|| err(at, "expected a mapping"))
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, ConfigdriveError> {
    v.as_str().ok_or_else(|| err(at, "expected a string"))
}

fn strings(v: &Value, at: &str) -> Result<Vec<String>, ConfigdriveError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| string(i, at).map(str::to_string))
            .collect(),
        _ => Err(err(at, "expected a string or a list of strings")),
    }
}

/// netplan booleans: `true`/`false`, and the `yes`/`no` spellings it also accepts.
fn boolean(v: &Value, at: &str) -> Result<bool, ConfigdriveError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if matches!(s.as_str(), "true" | "yes" | "on") => Ok(true),
        Value::String(s) if matches!(s.as_str(), "false" | "no" | "off") => Ok(false),
        _ => Err(err(at, "expected true or false")),
    }
}

fn ip(s: &str, at: &str) -> Result<IpAddr, ConfigdriveError> {
    s.parse()
        .map_err(|_| err(at, &format!("`{s}` is not an IP address")))
}

/// `10.0.0.5/24` → (10.0.0.5, 24).
fn cidr(s: &str, at: &str) -> Result<(IpAddr, u8), ConfigdriveError> {
    let (addr, prefix) = s.split_once('/').ok_or_else(|| {
        err(
            at,
            &format!("`{s}` needs a prefix length, e.g. 192.0.2.10/24"),
        )
    })?;
    let addr = ip(addr, at)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok((addr, p)),
        _ => Err(err(at, &format!("`{s}` has an invalid prefix length"))),
    }
}

/// A netmask (dotted or IPv6 form) or a prefix length, as a prefix length.
fn prefix_of(mask: &Value, at: &str) -> Result<u8, ConfigdriveError> {
    if let Some(n) = mask.as_u64() {
        return u8::try_from(n).map_err(|_| err(at, "invalid prefix length"));
    }
    let bits = match ip(string(mask, at)?, at)? {
        IpAddr::V4(m) => u128::from(u32::from(m)) << 96,
        IpAddr::V6(m) => u128::from(m),
    };
    let prefix = bits.leading_ones();
    if bits.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(err(at, "netmask is not contiguous"));
    }
    Ok(prefix as u8)
}

fn netmask(v4: bool, prefix: u8) -> String {
    if v4 {
        let m = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        Ipv4Addr::from(m).to_string()
    } else {
        let m = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        };
        Ipv6Addr::from(m).to_string()
    }
}

fn default_route(gateway: IpAddr, metric: Option<Value>) -> Route {
    let dest = if gateway.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    Route {
        dest,
        prefix: 0,
        gateway,
        metric,
    }
}

impl Model {
    fn add_dns(&mut self, addr: String) {
        if !self.dns.contains(&addr) {
            self.dns.push(addr);
        }
    }

    /// The network_data.json value: `links`, `networks`, `services`.
    fn emit(&self) -> Value {
        let mut links = vec![];
        let mut networks = vec![];
        for link in &self.links {
            let mut l = Map::new();
            l.insert("id".into(), json!(link.id));
            l.insert("type".into(), json!("phy"));
            if let Some(mac) = &link.mac {
                l.insert("ethernet_mac_address".into(), json!(mac));
            }
            // `name` is not in OpenStack's schema but cloud-init honours it; without a
            // MAC it is the only way to say which interface is meant.
            if let Some(name) = &link.name {
                l.insert("name".into(), json!(name));
            }
            if let Some(mtu) = &link.mtu {
                l.insert("mtu".into(), mtu.clone());
            }
            links.push(Value::Object(l));
            for net in &link.nets {
                let id = format!("network{}", networks.len());
                let mut n = Map::new();
                n.insert("id".into(), json!(id));
                n.insert("network_id".into(), json!(id));
                n.insert("link".into(), json!(link.id));
                match net.kind {
                    Kind::Dhcp4 => {
                        n.insert("type".into(), json!("ipv4_dhcp"));
                    }
                    Kind::Dhcp6 => {
                        n.insert("type".into(), json!("ipv6_dhcp"));
                    }
                    Kind::Static(addr, prefix) => {
                        n.insert(
                            "type".into(),
                            json!(if addr.is_ipv4() { "ipv4" } else { "ipv6" }),
                        );
                        n.insert("ip_address".into(), json!(addr.to_string()));
                        n.insert("netmask".into(), json!(netmask(addr.is_ipv4(), prefix)));
                    }
                }
                let routes: Vec<Value> = net.routes.iter().map(Route::emit).collect();
                n.insert("routes".into(), Value::Array(routes));
                let search: Vec<Value> = net.search.iter().chain(&self.search).cloned().collect();
                if !search.is_empty() {
                    n.insert("dns_search".into(), Value::Array(search));
                }
                networks.push(Value::Object(n));
            }
        }
        let services: Vec<Value> = self
            .dns
            .iter()
            .map(|a| json!({ "type": "dns", "address": a }))
            .collect();
        json!({ "links": links, "networks": networks, "services": services })
    }
}

impl Route {
    fn emit(&self) -> Value {
        let mut r = Map::new();
        r.insert("network".into(), json!(self.dest.to_string()));
        r.insert(
            "netmask".into(),
            json!(netmask(self.dest.is_ipv4(), self.prefix)),
        );
        r.insert("gateway".into(), json!(self.gateway.to_string()));
        if let Some(m) = &self.metric {
            r.insert("metric".into(), m.clone());
        }
        Value::Object(r)
    }
}
