//! cloud-init v1 (`physical` and `nameserver` entries) into the conversion model.

use serde_json::{Map, Value};

use super::*;

/// cloud-init v1: `physical` entries with subnets, and `nameserver` entries.
pub(super) fn from_v1(root: &Map<String, Value>) -> Result<Model, ConfigdriveError> {
    only_keys(root, &["version", "config"], "")?;
    let mut model = Model::default();
    let Some(config) = root.get("config") else {
        return Ok(model);
    };
    let items = config
        .as_array()
        .ok_or_else(|| err("config", "expected a list"))?;
    for (i, item) in items.iter().enumerate() {
        let at = format!("config[{i}]");
        let item = object(item, &at)?;
        match item.get("type").and_then(Value::as_str) {
            Some("physical") => {
                only_keys(
                    item,
                    &["type", "name", "mac_address", "mtu", "subnets"],
                    &at,
                )?;
                let name = string(item.get("name").unwrap_or(&Value::Null), &join(&at, "name"))?;
                let mac = match item.get("mac_address") {
                    Some(m) => Some(string(m, &join(&at, "mac_address"))?.to_lowercase()),
                    None => None,
                };
                let mut link = Link {
                    id: name.to_string(),
                    name: Some(name.into()),
                    mac,
                    mtu: item.get("mtu").cloned(),
                    nets: vec![],
                };
                let subnets = item
                    .get("subnets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (j, subnet) in subnets.iter().enumerate() {
                    v1_subnet(&mut link, &mut model, subnet, &format!("{at}.subnets[{j}]"))?;
                }
                model.links.push(link);
            }
            Some("nameserver") => {
                only_keys(item, &["type", "address", "search"], &at)?;
                if let Some(a) = item.get("address") {
                    for addr in strings(a, &join(&at, "address"))? {
                        ip(&addr, &join(&at, "address"))?;
                        model.add_dns(addr);
                    }
                }
                if let Some(s) = item.get("search") {
                    model.search.extend(
                        strings(s, &join(&at, "search"))?
                            .into_iter()
                            .map(Value::String),
                    );
                }
            }
            _ => return Err(err(&join(&at, "type"), NOT_CONVERTIBLE)),
        }
    }
    Ok(model)
}

fn v1_subnet(
    link: &mut Link,
    model: &mut Model,
    subnet: &Value,
    at: &str,
) -> Result<(), ConfigdriveError> {
    let s = object(subnet, at)?;
    let kind = match s.get("type").and_then(Value::as_str) {
        Some("dhcp" | "dhcp4") => Kind::Dhcp4,
        Some("dhcp6") => Kind::Dhcp6,
        Some("static" | "static6") => {
            let a_at = join(at, "address");
            let addr = string(s.get("address").unwrap_or(&Value::Null), &a_at)?;
            if addr.contains('/') {
                let (ip_, prefix) = cidr(addr, &a_at)?;
                Kind::Static(ip_, prefix)
            } else {
                let mask = s.get("netmask").or_else(|| s.get("prefix"));
                let mask =
                    mask.ok_or_else(|| err(&a_at, "give the address as a CIDR or add `netmask`"))?;
                Kind::Static(ip(addr, &a_at)?, prefix_of(mask, &join(at, "netmask"))?)
            }
        }
        _ => return Err(err(&join(at, "type"), NOT_CONVERTIBLE)),
    };
    only_keys(
        s,
        &[
            "type",
            "address",
            "netmask",
            "prefix",
            "gateway",
            "routes",
            "dns_nameservers",
            "dns_search",
        ],
        at,
    )?;
    let mut search = vec![];
    if let Some(v) = s.get("dns_search") {
        search = strings(v, &join(at, "dns_search"))?
            .into_iter()
            .map(Value::String)
            .collect();
    }
    link.nets.push(Net {
        kind,
        routes: vec![],
        search,
    });
    if let Some(gw) = s.get("gateway") {
        let g_at = join(at, "gateway");
        link.add_route(default_route(ip(string(gw, &g_at)?, &g_at)?, None), &g_at)?;
    }
    if let Some(routes) = s.get("routes") {
        let r_at = join(at, "routes");
        let list = routes
            .as_array()
            .ok_or_else(|| err(&r_at, "expected a list of routes"))?;
        for (i, r) in list.iter().enumerate() {
            let i_at = format!("{r_at}[{i}]");
            let r = object(r, &i_at)?;
            only_keys(
                r,
                &[
                    "network",
                    "destination",
                    "netmask",
                    "prefix",
                    "gateway",
                    "metric",
                ],
                &i_at,
            )?;
            let dest = r
                .get("network")
                .or_else(|| r.get("destination"))
                .unwrap_or(&Value::Null);
            let dest = string(dest, &join(&i_at, "network"))?;
            let (dest, prefix) = if dest.contains('/') {
                cidr(dest, &join(&i_at, "network"))?
            } else {
                let mask = r.get("netmask").or_else(|| r.get("prefix"));
                let mask =
                    mask.ok_or_else(|| err(&i_at, "give the network as a CIDR or add `netmask`"))?;
                (
                    ip(dest, &join(&i_at, "network"))?,
                    prefix_of(mask, &join(&i_at, "netmask"))?,
                )
            };
            let gw_at = join(&i_at, "gateway");
            let gateway = ip(
                string(r.get("gateway").unwrap_or(&Value::Null), &gw_at)?,
                &gw_at,
            )?;
            link.add_route(
                Route {
                    dest,
                    prefix,
                    gateway,
                    metric: r.get("metric").cloned(),
                },
                &i_at,
            )?;
        }
    }
    if let Some(v) = s.get("dns_nameservers") {
        for addr in strings(v, &join(at, "dns_nameservers"))? {
            ip(&addr, &join(at, "dns_nameservers"))?;
            model.add_dns(addr);
        }
    }
    Ok(())
}
