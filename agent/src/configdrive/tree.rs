//! The seed files cloud-init reads, per flavour.
//!
//! NoCloud (`DataSourceNoCloud`): `meta-data` and `user-data` must exist,
//! `network-config` and `vendor-data` are optional. OpenStack config-2
//! (`helpers/openstack.py`): `openstack/<version>/meta_data.json` must exist
//! and carry `uuid`; cloud-init picks the newest version directory it knows and
//! falls back to `latest`, so both are written with the same content.

use serde_json::{Map, Value};

use super::{netdata, ConfigdriveError};
use crate::plan::ConfigdrivePlan;

/// The newest OpenStack metadata version cloud-init (22.x and later) knows.
pub(super) const OPENSTACK_VERSION: &str = "2018-08-27";

/// User data written when the document has none: NoCloud requires the file,
/// and an empty cloud-config is the unambiguous "nothing to do".
/// (`cloud-init schema` rejects a bare header: "Cloud-config is not a YAML dict").
pub(super) const EMPTY_USER_DATA: &str = "#cloud-config\n{}\n";

type Tree = Vec<(String, Vec<u8>)>;

/// The NoCloud tree: `meta-data`, `user-data`, optional `network-config` and `vendor-data`.
pub(super) fn nocloud(plan: &ConfigdrivePlan) -> Result<Tree, ConfigdriveError> {
    let mut md = meta_data(plan)?;
    md.insert(
        "instance-id".into(),
        Value::String(plan.instance_id.clone()),
    );
    md.insert(
        "local-hostname".into(),
        Value::String(plan.hostname.clone()),
    );
    let mut tree = vec![
        (
            "meta-data".to_string(),
            json("meta-data", &Value::Object(md))?,
        ),
        (
            "user-data".to_string(),
            plan.user_data
                .as_deref()
                .unwrap_or(EMPTY_USER_DATA)
                .as_bytes()
                .to_vec(),
        ),
    ];
    if let Some(net) = &plan.network_config {
        netdata::version(net)?;
        tree.push(("network-config".to_string(), json("network-config", net)?));
    }
    if let Some(vendor) = &plan.vendor_data {
        tree.push(("vendor-data".to_string(), vendor.as_bytes().to_vec()));
    }
    Ok(tree)
}

/// The config-2 tree under `openstack/latest/` and `openstack/<OPENSTACK_VERSION>/`.
pub(super) fn config2(plan: &ConfigdrivePlan) -> Result<Tree, ConfigdriveError> {
    let mut md = Map::new();
    md.insert("uuid".into(), Value::String(plan.instance_id.clone()));
    md.insert("hostname".into(), Value::String(plan.hostname.clone()));
    md.insert("name".into(), Value::String(plan.hostname.clone()));
    let mut content = Vec::new();
    for (key, value) in meta_data(plan)? {
        match key.as_str() {
            // The plan's fields are the resolved instance id and hostname.
            "instance-id" | "local-hostname" | "uuid" | "hostname" => {}
            "public-keys" | "public_keys" => {
                md.insert("public_keys".into(), public_keys(&key, value)?);
            }
            "files" => {
                md.insert("files".into(), files(value, &mut content)?);
            }
            _ => {
                md.insert(key, value);
            }
        }
    }
    let mut per_version: Vec<(&str, Vec<u8>)> = vec![(
        "meta_data.json",
        json("meta_data.json", &Value::Object(md))?,
    )];
    if let Some(user) = &plan.user_data {
        per_version.push(("user_data", user.as_bytes().to_vec()));
    }
    if let Some(net) = &plan.network_config {
        per_version.push((
            "network_data.json",
            json("network_data.json", &netdata::to_network_data(net)?)?,
        ));
    }
    if let Some(vendor) = &plan.vendor_data {
        let wrapped = serde_json::json!({ "cloud-init": vendor });
        per_version.push(("vendor_data.json", json("vendor_data.json", &wrapped)?));
    }
    let mut tree = Tree::new();
    for version in [OPENSTACK_VERSION, "latest"] {
        for (name, bytes) in &per_version {
            tree.push((format!("openstack/{version}/{name}"), bytes.clone()));
        }
    }
    tree.extend(content);
    Ok(tree)
}

/// The document's meta_data as a map (null counts as empty).
fn meta_data(plan: &ConfigdrivePlan) -> Result<Map<String, Value>, ConfigdriveError> {
    match &plan.meta_data {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        Value::Bool(_) => Err(ConfigdriveError::MetaDataNotMapping { found: "a boolean" }),
        Value::Number(_) => Err(ConfigdriveError::MetaDataNotMapping { found: "a number" }),
        Value::String(_) => Err(ConfigdriveError::MetaDataNotMapping { found: "a string" }),
        Value::Array(_) => Err(ConfigdriveError::MetaDataNotMapping { found: "a list" }),
    }
}

/// OpenStack's `public_keys` is a map of name → key; NoCloud also allows a list or one string.
fn public_keys(key: &str, value: Value) -> Result<Value, ConfigdriveError> {
    let bad = |reason: &str| ConfigdriveError::MetaData {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    match value {
        Value::Object(_) => Ok(value),
        Value::String(s) => Ok(serde_json::json!({ "key-0": s })),
        Value::Array(list) => {
            let mut keys = Map::new();
            for (i, k) in list.into_iter().enumerate() {
                if !k.is_string() {
                    return Err(bad("every entry of the list must be a public key string"));
                }
                keys.insert(format!("key-{i}"), k);
            }
            Ok(Value::Object(keys))
        }
        _ => Err(bad(
            "expected a public key, a list of them or a map of name to key",
        )),
    }
}

/// `files: [{path, content}]` → content files under `openstack/content/` and `{path, content_path}` entries.
fn files(value: Value, content: &mut Tree) -> Result<Value, ConfigdriveError> {
    let bad = |at: String, reason: &str| ConfigdriveError::MetaData {
        key: at,
        reason: reason.to_string(),
    };
    let Value::Array(items) = value else {
        return Err(bad("files".into(), "expected a list of {path, content}"));
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("files[{i}]");
        let path = item.get("path").and_then(Value::as_str);
        let text = item.get("content").and_then(Value::as_str);
        let (Some(path), Some(text)) = (path, text) else {
            return Err(bad(at, "expected {path: <absolute path>, content: <text>}"));
        };
        let name = format!("{i:04}");
        content.push((
            format!("openstack/content/{name}"),
            text.as_bytes().to_vec(),
        ));
        out.push(serde_json::json!({ "path": path, "content_path": format!("/content/{name}") }));
    }
    Ok(Value::Array(out))
}

/// JSON, also for NoCloud's YAML files: JSON is YAML, and its quoted strings
/// keep cloud-init's YAML 1.1 parser from reading a MAC like `52:54:00:12:34:56`
/// as a base-60 number, which a YAML 1.2 emitter leaves unquoted.
fn json(what: &'static str, value: &Value) -> Result<Vec<u8>, ConfigdriveError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| ConfigdriveError::Encode {
        what,
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}
