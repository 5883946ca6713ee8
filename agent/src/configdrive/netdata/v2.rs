//! netplan v2 (`ethernets` only) into the conversion model.

use serde_json::{Map, Value};

use super::*;

/// netplan v2: `ethernets` only.
pub(super) fn from_v2(root: &Map<String, Value>) -> Result<Model, ConfigdriveError> {
    only_keys(root, &["version", "renderer", "ethernets"], "")?;
    let mut model = Model::default();
    let Some(eths) = root.get("ethernets") else {
        return Ok(model);
    };
    for (id, cfg) in object(eths, "ethernets")? {
        let link = ethernet(id, cfg, &mut model)?;
        model.links.push(link);
    }
    Ok(model)
}

/// One `ethernets.<id>` entry as a link (its name servers go to `model`).
fn ethernet(id: &str, cfg: &Value, model: &mut Model) -> Result<Link, ConfigdriveError> {
    let at = format!("ethernets.{id}");
    let cfg = object(cfg, &at)?;
    only_keys(
        cfg,
        &[
            "match",
            "set-name",
            "dhcp4",
            "dhcp6",
            "addresses",
            "gateway4",
            "gateway6",
            "routes",
            "nameservers",
            "mtu",
            "optional",
        ],
        &at,
    )?;
    let mut link = Link {
        id: id.to_string(),
        name: None,
        mac: None,
        mtu: cfg.get("mtu").cloned(),
        nets: vec![],
    };
    match_link(&mut link, cfg, &at)?;
    for (key, kind) in [("dhcp4", Kind::Dhcp4), ("dhcp6", Kind::Dhcp6)] {
        if let Some(v) = cfg.get(key) {
            if boolean(v, &join(&at, key))? {
                link.nets.push(Net {
                    kind,
                    routes: vec![],
                    search: vec![],
                });
            }
        }
    }
    if let Some(addrs) = cfg.get("addresses") {
        addresses(&mut link, addrs, &join(&at, "addresses"))?;
    }
    for key in ["gateway4", "gateway6"] {
        if let Some(gw) = cfg.get(key) {
            let g_at = join(&at, key);
            link.add_route(default_route(ip(string(gw, &g_at)?, &g_at)?, None), &g_at)?;
        }
    }
    if let Some(r) = cfg.get("routes") {
        routes(&mut link, r, &join(&at, "routes"))?;
    }
    if let Some(ns) = cfg.get("nameservers") {
        nameservers(&mut link, model, ns, &join(&at, "nameservers"))?;
    }
    Ok(link)
}

/// `match` (by MAC or exact name) and `set-name`; an entry without `match` names itself.
fn match_link(link: &mut Link, cfg: &Map<String, Value>, at: &str) -> Result<(), ConfigdriveError> {
    match cfg.get("match") {
        Some(m) => {
            let m_at = join(at, "match");
            let m = object(m, &m_at)?;
            only_keys(m, &["macaddress", "name"], &m_at)?;
            if let Some(mac) = m.get("macaddress") {
                link.mac = Some(string(mac, &join(&m_at, "macaddress"))?.to_lowercase());
            }
            if let Some(name) = m.get("name") {
                let name = string(name, &join(&m_at, "name"))?;
                if name.contains(['*', '?', '[']) {
                    return Err(err(
                        &join(&m_at, "name"),
                        "a glob matches many interfaces; network_data.json names one",
                    ));
                }
                link.name = Some(name.to_string());
            }
        }
        None => link.name = Some(link.id.clone()),
    }
    if let Some(name) = cfg.get("set-name") {
        link.name = Some(string(name, &join(at, "set-name"))?.to_string());
    }
    if link.mac.is_none() && link.name.is_none() {
        return Err(err(&join(at, "match"), "match by `macaddress` or `name`"));
    }
    Ok(())
}

/// `addresses`: static CIDR addresses.
fn addresses(link: &mut Link, addrs: &Value, at: &str) -> Result<(), ConfigdriveError> {
    let list = addrs
        .as_array()
        .ok_or_else(|| err(at, "expected a list of addresses"))?;
    for (i, a) in list.iter().enumerate() {
        let i_at = format!("{at}[{i}]");
        let (addr, prefix) = cidr(string(a, &i_at)?, &i_at)?;
        link.nets.push(Net {
            kind: Kind::Static(addr, prefix),
            routes: vec![],
            search: vec![],
        });
    }
    Ok(())
}

/// `routes`: `to` (a CIDR or `default`), `via`, optional `metric`.
fn routes(link: &mut Link, routes: &Value, at: &str) -> Result<(), ConfigdriveError> {
    let list = routes
        .as_array()
        .ok_or_else(|| err(at, "expected a list of routes"))?;
    for (i, r) in list.iter().enumerate() {
        let i_at = format!("{at}[{i}]");
        let r = object(r, &i_at)?;
        only_keys(r, &["to", "via", "metric"], &i_at)?;
        let to = string(r.get("to").unwrap_or(&Value::Null), &join(&i_at, "to"))?;
        let via = string(r.get("via").unwrap_or(&Value::Null), &join(&i_at, "via"))?;
        let gateway = ip(via, &join(&i_at, "via"))?;
        let route = if to == "default" {
            default_route(gateway, r.get("metric").cloned())
        } else {
            let (dest, prefix) = cidr(to, &join(&i_at, "to"))?;
            Route {
                dest,
                prefix,
                gateway,
                metric: r.get("metric").cloned(),
            }
        };
        link.add_route(route, &i_at)?;
    }
    Ok(())
}

/// `nameservers`: addresses are global in network_data.json, search domains per network.
fn nameservers(
    link: &mut Link,
    model: &mut Model,
    ns: &Value,
    at: &str,
) -> Result<(), ConfigdriveError> {
    let ns = object(ns, at)?;
    only_keys(ns, &["addresses", "search"], at)?;
    if let Some(a) = ns.get("addresses") {
        for addr in strings(a, &join(at, "addresses"))? {
            ip(&addr, &join(at, "addresses"))?;
            model.add_dns(addr);
        }
    }
    if let Some(s) = ns.get("search") {
        let search: Vec<Value> = strings(s, &join(at, "search"))?
            .into_iter()
            .map(Value::String)
            .collect();
        link.nets
            .iter_mut()
            .for_each(|n| n.search.extend(search.iter().cloned()));
    }
    Ok(())
}
