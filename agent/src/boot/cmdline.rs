//! The kernel command line as the ramdisk reads it: Linux quoting, the `imprint.*`
//! keys, `ip=` (nfsroot and dracut forms, [`super::ip_arg`]) and dracut-style `vlan=`.
//!
//! | key | meaning |
//! |---|---|
//! | `imprint.config=URL` | the provisioning document (`http://`, `https://`, `file:`) |
//! | `imprint.lookup=URL` | without `imprint.config=`: POST the inventory there for the document |
//! | `imprint.lookup_timeout=SECONDS` | how long the lookup keeps asking (default 3600) |
//! | `imprint.lookup_lldp=SECONDS` | how long the lookup's inventory listens for LLDP (default 5 as PID 1) |
//! | `imprint.ca=PATH` | PEM bundle trusted for HTTPS instead of the built-in roots |
//! | `imprint.debug=1` | verbose log; a shell stays on the console at the end |
//! | `imprint.disks=…` | passed to the engine (optional disk restriction) |
//! | `imprint.report=URL` | where to report failures before a document is found |
//! | `imprint.on_failure=poweroff\|reboot\|halt` | what PID 1 does after a failure (default `poweroff`) |
//! | `imprint.failure_delay=SECONDS` | how long the error stays on screen first (default 60) |
//! | `imprint.net_timeout=SECONDS` | how long DHCP keeps trying for a lease (default 90) |
//! | `imprint.net6_timeout=SECONDS` | how long IPv6 waits for a router, an address and DHCPv6 (default 40, as dracut) |
//! | `imprint.report_timeout=SECONDS` | cap on report retries (read by the CLI through [`Cmdline::get`]) |
//! | `imprint.iso=1` | set by the ISO's boot loader: wait for the boot medium |
//! | `ip=…` | network (see [`super::ip_arg`]: `dhcp`, `dhcp6`, `auto6`, `either6`, static v4 and v6) |
//! | `vlan=NAME:PARENT` | a VLAN interface, e.g. `vlan=eth0.100:eth0` (id from the name's digits) |

pub use super::ip_arg::{parse_ip, IpConfig, StaticIp, V6Mode};
use std::time::Duration;

/// A command line that cannot be used as given.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    #[error("reading /proc/cmdline: {0}")]
    Read(std::io::Error),
    #[error("kernel argument {arg}: {why}")]
    Invalid { arg: String, why: String },
}

/// What PID 1 does after a failure, once the error has been shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureAction {
    /// Power the machine off (default): a provisioning system sees it through the BMC.
    #[default]
    PowerOff,
    /// Reboot (the host will PXE boot again and retry).
    Reboot,
    /// Stay on, showing the error.
    Halt,
}

/// A VLAN interface to create before configuring addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub name: String,
    pub parent: String,
    pub id: u16,
}

/// The parsed command line (plus arguments embedded in the boot ISO, see [`Cmdline::merge`]).
#[derive(Debug, Clone, Default)]
pub struct Cmdline {
    /// Every argument in order, as `key` and optional `value`.
    pub args: Vec<(String, Option<String>)>,
    pub config: Option<String>,
    /// `imprint.lookup=URL`: where to POST the inventory when no `imprint.config=` is given.
    pub lookup: Option<String>,
    /// `imprint.lookup_timeout=`: the bound on the whole lookup.
    pub lookup_timeout: Duration,
    /// `imprint.lookup_lldp=`: how long the lookup listens for LLDP; `None`: 5 s as PID 1,
    /// none by hand.
    pub lookup_lldp: Option<Duration>,
    /// The floor of a server's `Retry-After` (5 s; only `run --lookup-min-wait` lowers it,
    /// for tests).
    pub lookup_min_wait: Duration,
    pub ca: Option<String>,
    pub debug: bool,
    pub disks: Option<String>,
    pub report: Option<String>,
    pub iso: bool,
    pub on_failure: FailureAction,
    pub failure_delay: Duration,
    /// How long DHCP keeps trying (`imprint.net_timeout=`).
    pub net_timeout: Duration,
    /// How long IPv6 waits for a router answer, a usable address and DHCPv6
    /// (`imprint.net6_timeout=`; dracut's `rd.net.timeout.ipv6auto` is 40 s too).
    pub net6_timeout: Duration,
    pub ip: Vec<IpConfig>,
    pub vlans: Vec<Vlan>,
    /// A document found on the boot medium during early boot: (source, text).
    pub embedded: Option<(String, String)>,
    /// Trust keys found in the boot medium's customization area during early boot:
    /// (origin, key file bytes). Never read from the command line text itself, which
    /// comes over the same network as the document.
    pub medium_keys: Vec<(String, Vec<u8>)>,
}

impl Cmdline {
    /// Reads and parses `/proc/cmdline`.
    pub fn read() -> Result<Cmdline, CmdlineError> {
        let text = std::fs::read_to_string("/proc/cmdline").map_err(CmdlineError::Read)?;
        Cmdline::parse(&text)
    }

    /// Parses a command line.
    pub fn parse(text: &str) -> Result<Cmdline, CmdlineError> {
        Cmdline::from_args(split(text).into_iter().map(|t| key_value(&t)).collect())
    }

    /// Appends `extra` arguments (one argument each, unquoted) as if they ended the
    /// command line: later values win.
    pub fn merge(&self, extra: &[String]) -> Result<Cmdline, CmdlineError> {
        let mut args = self.args.clone();
        args.extend(extra.iter().map(|a| key_value(a)));
        let mut merged = Cmdline::from_args(args)?;
        merged.embedded = self.embedded.clone();
        merged.medium_keys = self.medium_keys.clone();
        Ok(merged)
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    fn from_args(args: Vec<(String, Option<String>)>) -> Result<Cmdline, CmdlineError> {
        let mut c = Cmdline {
            failure_delay: Duration::from_secs(60),
            net_timeout: Duration::from_secs(90),
            net6_timeout: Duration::from_secs(40),
            lookup_timeout: super::lookup::DEFAULT_TIMEOUT,
            lookup_min_wait: super::lookup::MIN_WAIT,
            ..Default::default()
        };
        for (key, value) in &args {
            let v = value.as_deref().unwrap_or("");
            let invalid = |why: &str| CmdlineError::Invalid {
                arg: format!("{key}={v}"),
                why: why.to_string(),
            };
            match key.as_str() {
                "imprint.config" => c.config = non_empty(v),
                "imprint.lookup" => c.lookup = non_empty(v),
                "imprint.ca" => c.ca = non_empty(v),
                "imprint.debug" => {
                    c.debug = value.is_none() || matches!(v, "1" | "true" | "yes" | "on")
                }
                "imprint.disks" => c.disks = non_empty(v),
                "imprint.report" => c.report = non_empty(v),
                "imprint.iso" => c.iso = value.is_none() || v == "1",
                "imprint.on_failure" => {
                    c.on_failure = match v {
                        "poweroff" => FailureAction::PowerOff,
                        "reboot" => FailureAction::Reboot,
                        "halt" => FailureAction::Halt,
                        _ => return Err(invalid("expected poweroff, reboot or halt")),
                    }
                }
                "imprint.failure_delay"
                | "imprint.net_timeout"
                | "imprint.net6_timeout"
                | "imprint.lookup_timeout"
                | "imprint.lookup_lldp" => {
                    let s: u64 = v
                        .parse()
                        .map_err(|_| invalid("expected a number of seconds"))?;
                    let d = Duration::from_secs(s);
                    match key.as_str() {
                        "imprint.net_timeout" => c.net_timeout = d,
                        "imprint.net6_timeout" => c.net6_timeout = d,
                        "imprint.lookup_timeout" => c.lookup_timeout = d,
                        "imprint.lookup_lldp" => c.lookup_lldp = Some(d),
                        _ => c.failure_delay = d,
                    }
                }
                "ip" => {
                    let ip = parse_ip(v).map_err(|why| invalid(&why))?;
                    // `ip=off` after other settings turns everything off, as with the kernel.
                    if ip == IpConfig::Off {
                        c.ip.clear();
                    }
                    c.ip.push(ip);
                }
                "vlan" => c.vlans.push(parse_vlan(v).map_err(|why| invalid(&why))?),
                _ => {}
            }
        }
        c.args = args;
        Ok(c)
    }
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

fn key_value(token: &str) -> (String, Option<String>) {
    match token.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (token.to_string(), None),
    }
}

/// Splits like the kernel: whitespace separates, double quotes group and are removed.
/// Arguments after `--` belong to init and are dropped.
pub fn split(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut in_token) = (false, false);
    for ch in text.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                in_token = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        out.push(cur);
    }
    if let Some(end) = out.iter().position(|t| t == "--") {
        out.truncate(end);
    }
    out
}

/// Parses a `vlan=NAME:PARENT` value; the id is the trailing number of the name.
pub fn parse_vlan(v: &str) -> Result<Vlan, String> {
    let (name, parent) = v
        .split_once(':')
        .ok_or("expected NAME:PARENT, e.g. eth0.100:eth0")?;
    let digits: String = name
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let id: u16 = digits
        .parse()
        .map_err(|_| format!("{name:?} does not end in a VLAN id"))?;
    if !(1..=4094).contains(&id) || parent.is_empty() {
        return Err(format!("VLAN id {id} must be 1..4094 and the parent named"));
    }
    Ok(Vlan {
        name: name.to_string(),
        parent: parent.to_string(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_group_words_and_are_removed() {
        assert_eq!(
            split(r#"BOOT_IMAGE=/boot/vmlinuz a="b c" "d=e f"  g -- h"#),
            ["BOOT_IMAGE=/boot/vmlinuz", "a=b c", "d=e f", "g"]
        );
    }

    #[test]
    fn imprint_keys_are_read_and_the_last_value_wins() {
        let c = Cmdline::parse(
            "console=ttyS0 imprint.config=http://a/1.yaml imprint.debug=1 imprint.config=http://b/2.yaml imprint.on_failure=reboot imprint.failure_delay=5",
        )
        .unwrap();
        assert_eq!(c.config.as_deref(), Some("http://b/2.yaml"));
        assert!(c.debug);
        assert_eq!(c.on_failure, FailureAction::Reboot);
        assert_eq!(c.failure_delay, Duration::from_secs(5));
        assert_eq!(c.net_timeout, Duration::from_secs(90), "the default");
        assert_eq!(c.get("console"), Some("ttyS0"));
        let c = Cmdline::parse("imprint.net_timeout=300").unwrap();
        assert_eq!(c.net_timeout, Duration::from_secs(300));
        let e = Cmdline::parse("imprint.net_timeout=soon")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("imprint.net_timeout=soon") && e.contains("seconds"),
            "{e}"
        );
    }

    #[test]
    fn lookup_arguments_and_their_defaults() {
        let c = Cmdline::parse("imprint.lookup=http://prov/lookup").unwrap();
        assert_eq!(c.lookup.as_deref(), Some("http://prov/lookup"));
        assert_eq!(c.lookup_timeout, Duration::from_secs(3600));
        assert_eq!(c.lookup_min_wait, Duration::from_secs(5));
        assert_eq!(c.lookup_lldp, None);
        let c = Cmdline::parse("imprint.lookup_timeout=600 imprint.lookup_lldp=0").unwrap();
        assert_eq!(c.lookup_timeout, Duration::from_secs(600));
        assert_eq!(c.lookup_lldp, Some(Duration::ZERO));
        let e = Cmdline::parse("imprint.lookup_timeout=soon").unwrap_err();
        assert!(e.to_string().contains("imprint.lookup_timeout=soon"), "{e}");
        // From the boot medium's area, like every imprint.* argument.
        let merged = Cmdline::parse("quiet")
            .unwrap()
            .merge(&["imprint.lookup=https://prov/l".into()])
            .unwrap();
        assert_eq!(merged.lookup.as_deref(), Some("https://prov/l"));
    }

    #[test]
    fn merge_appends_embedded_arguments_after_the_command_line() {
        let c = Cmdline::parse("imprint.debug=0 ip=dhcp").unwrap();
        let m = c
            .merge(&[
                "imprint.debug=1".into(),
                "ip=10.0.0.5::10.0.0.1:255.255.255.0:h1:eth1:off".into(),
            ])
            .unwrap();
        assert!(m.debug);
        assert_eq!(m.ip.len(), 2);
    }

    #[test]
    fn bad_ip_values_name_the_argument() {
        let e = Cmdline::parse("ip=10.0.0.300::10.0.0.1:255.255.255.0::eth0:off").unwrap_err();
        assert!(
            e.to_string().contains("ip=10.0.0.300") && e.to_string().contains("client address"),
            "{e}"
        );
        let c =
            Cmdline::parse("ip=eth0:dhcp6 imprint.config=http://[fd42:9::2]:8080/x.yaml").unwrap();
        assert_eq!(c.config.as_deref(), Some("http://[fd42:9::2]:8080/x.yaml"));
        assert_eq!(c.ip.len(), 1);
    }

    #[test]
    fn vlan_takes_its_id_from_the_name() {
        assert_eq!(
            parse_vlan("eth0.100:eth0").unwrap(),
            Vlan {
                name: "eth0.100".into(),
                parent: "eth0".into(),
                id: 100
            }
        );
        assert_eq!(parse_vlan("vlan7:ens3").unwrap().id, 7);
        assert!(parse_vlan("eth0").is_err());
        assert!(parse_vlan("eth0.5000:eth0").is_err());
    }
}
