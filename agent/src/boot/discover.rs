//! Where `imprint run` finds its document, in order: `imprint.config=` (http, https,
//! file), the answer of `imprint.lookup=` (see [`super::lookup`]), the document
//! embedded in the boot ISO, a file `imprint.yaml`/`imprint.json` on a filesystem
//! labelled `IMPRINT`.

use super::cmdline::Cmdline;
use crate::runner::log;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long fetching `imprint.config=` keeps retrying while the network settles.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(60);
/// How long to wait for the boot medium to appear when booted from the ISO.
pub const MEDIUM_WAIT: Duration = Duration::from_secs(15);
const LABEL: &str = "IMPRINT";
/// How a document found in the boot medium's customization area is named.
pub const MEDIUM_SOURCE: &str = "embedded in the boot medium";
const FILES: &[&str] = &["imprint.yaml", "imprint.yml", "imprint.json"];

/// Why no document was found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("fetching the document {url}: HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: &'static str,
    },
    #[error("fetching the document {url} failed for {secs} s: {last} (check the network and the URL given by imprint.config=)")]
    Unreachable {
        url: String,
        secs: u64,
        last: String,
    },
    #[error(transparent)]
    Lookup(#[from] super::lookup::LookupError),
    #[error("building the HTTP client: {0}")]
    Client(#[from] crate::http::ClientError),
    #[error("reading the document {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("imprint.config={0}: unsupported scheme (use http://, https:// or file:)")]
    Scheme(String),
    #[error("the boot medium {device}: {source}")]
    Iso {
        device: String,
        source: crate::iso::IsoError,
    },
    #[error(
        "no provisioning document: no imprint.config= or imprint.lookup= on the kernel command line, none embedded in a boot ISO, \
         and no filesystem labelled IMPRINT holding imprint.yaml or imprint.json"
    )]
    NotFound,
}

/// Finds the document; returns `(source, text)` where source says where it came from.
pub fn find_document(cmdline: &Cmdline) -> Result<(String, String), DiscoverError> {
    if let Some(url) = &cmdline.config {
        let text = fetch(url, cmdline.ca.as_deref().map(Path::new))?;
        return Ok((url.clone(), text));
    }
    if let Some(url) = &cmdline.lookup {
        return by_lookup(url, cmdline);
    }
    if let Some(found) = &cmdline.embedded {
        return Ok(found.clone());
    }
    let wait = if cmdline.iso {
        MEDIUM_WAIT
    } else {
        Duration::ZERO
    };
    if let Some((dev, e)) = wait_for_boot_medium(wait) {
        if let Some(doc) = e.config {
            return Ok((format!("{MEDIUM_SOURCE} {}", dev.display()), doc));
        }
    }
    if let Some(found) = from_labelled_filesystem() {
        return Ok(found);
    }
    Err(DiscoverError::NotFound)
}

/// How a document a lookup got without `Content-Location` is named.
pub const LOOKUP_SOURCE: &str = "the lookup answer of";

/// POSTs this machine's inventory to `url` until it answers with the document. The
/// source is the document's own URL when the server names it (`Content-Location`),
/// where its signature is looked for as beside `imprint.config=`.
fn by_lookup(url: &str, c: &Cmdline) -> Result<(String, String), DiscoverError> {
    let lldp = c.lookup_lldp.unwrap_or(if super::is_pid1() {
        Duration::from_secs(5)
    } else {
        Duration::ZERO
    });
    // With `imprint.disks=` (or `run --disks`), the disks imprint may use are the ones
    // it describes: several agents sharing one machine are told apart by them.
    let only: Option<Vec<PathBuf>> = c
        .disks
        .as_deref()
        .map(|d| d.split(',').map(PathBuf::from).collect());
    let mut inventory = crate::inventory::collect(&crate::inventory::Options {
        lldp,
        disks: only.is_none(),
        ..Default::default()
    });
    if let Some(paths) = &only {
        inventory.disks = crate::disks::inventory_paths(paths).unwrap_or_else(|e| {
            crate::runner::log::warn(&format!("inventory: reading the disks: {e}"));
            Vec::new()
        });
    }
    let body = serde_json::to_vec(&inventory).unwrap_or_default();
    let policy = super::lookup::Policy {
        min_wait: c.lookup_min_wait,
        timeout: c.lookup_timeout,
    };
    let found = super::lookup::lookup(url, &body, c.ca.as_deref().map(Path::new), policy)?;
    let source = found
        .location
        .unwrap_or_else(|| format!("{LOOKUP_SOURCE} {url}"));
    Ok((source, found.text))
}

/// Polls (bounded) for a medium carrying an imprint customization area.
pub fn wait_for_boot_medium(wait: Duration) -> Option<(PathBuf, crate::iso::Embedded)> {
    let start = Instant::now();
    loop {
        if let Some(found) = crate::iso::find_boot_medium() {
            return Some(found);
        }
        if start.elapsed() >= wait {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Fetches an `imprint.config=` URL; retries connection failures and 5xx until
/// [`FETCH_DEADLINE`], fails at once on other HTTP errors.
pub fn fetch(url: &str, ca: Option<&Path>) -> Result<String, DiscoverError> {
    if let Some(path) = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("file:"))
    {
        return std::fs::read_to_string(path).map_err(|source| DiscoverError::File {
            path: path.to_string(),
            source,
        });
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(DiscoverError::Scheme(url.to_string()));
    }
    let opts = crate::http::ClientOptions {
        ca_bundle: ca,
        read_timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let client = crate::http::client(&opts)?;
    let start = Instant::now();
    let mut delay = Duration::from_secs(1);
    loop {
        let last = match client.get(url).send() {
            Ok(resp) if resp.status().is_success() => {
                // The bytes as served (no charset decoding): a signature covers them.
                let unreadable = |last: String| DiscoverError::Unreachable {
                    url: url.into(),
                    secs: 0,
                    last,
                };
                let bytes = resp.bytes().map_err(|e| unreadable(e.to_string()))?;
                return String::from_utf8(bytes.to_vec())
                    .map_err(|e| unreadable(format!("not UTF-8 text: {e}")));
            }
            Ok(resp) if resp.status().is_server_error() => format!("HTTP {}", resp.status()),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let hint = match status {
                    404 => " (Not Found): the server has no document at this URL; check imprint.config=",
                    401 | 403 => " (access denied): check the URL's token or the server's permissions",
                    _ => "",
                };
                return Err(DiscoverError::Status {
                    url: url.into(),
                    status,
                    hint,
                });
            }
            Err(e) => error_chain(&e),
        };
        if start.elapsed() + delay > FETCH_DEADLINE {
            return Err(DiscoverError::Unreachable {
                url: url.into(),
                secs: start.elapsed().as_secs(),
                last,
            });
        }
        log::info(&format!(
            "fetching {url}: {last}; retrying in {} s",
            delay.as_secs()
        ));
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(8));
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Looks for a filesystem labelled `IMPRINT` on any block device or partition.
fn from_labelled_filesystem() -> Option<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let dev = PathBuf::from("/dev").join(&name);
        let Some(fstype) = probe_label(&dev)
            .filter(|(label, _)| label == LABEL)
            .map(|(_, t)| t)
        else {
            continue;
        };
        match read_from(&dev, &fstype, Path::new("/run/imprint/medium")) {
            Ok(Some((file, text))) => {
                return Some((format!("{file} on {} (label {LABEL})", dev.display()), text))
            }
            Ok(None) => log::warn(&format!(
                "{} is labelled {LABEL} but holds none of {}",
                dev.display(),
                FILES.join(", ")
            )),
            Err(e) => log::warn(&format!("reading {} (label {LABEL}): {e}", dev.display())),
        }
    }
    None
}

/// Mounts the first filesystem labelled `IMPRINT` read-only at `dir` (a chunk store on
/// the boot medium); unmounted when the guard drops. `None` when there is none.
pub fn mount_medium(dir: &Path) -> Option<ReadOnlyMount> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let dev = PathBuf::from("/dev").join(&name);
        let (label, fstype) = probe_label(&dev)?;
        if label != LABEL {
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        ReadOnlyMount::new(&dev, dir, &fstype)
            .inspect_err(|e| log::warn(&format!("mounting {} (label {LABEL}): {e}", dev.display())))
            .ok()
    })
}

/// (label, type) of the filesystem on `dev`, by libblkid.
fn probe_label(dev: &Path) -> Option<(String, String)> {
    let mut probe = crate::disks::blkid::Probe::from_path(dev).ok()?;
    if !probe.safe_probe().ok()? {
        return None;
    }
    Some((probe.value("LABEL")?, probe.value("TYPE")?))
}

/// Mounts `dev` read-only, reads the first of [`FILES`], unmounts.
fn read_from(
    dev: &Path,
    fstype: &str,
    dir: &Path,
) -> Result<Option<(String, String)>, std::io::Error> {
    std::fs::create_dir_all(dir)?;
    let _mount = ReadOnlyMount::new(dev, dir, fstype)?;
    for f in FILES {
        let p = dir.join(f);
        if p.exists() {
            return Ok(Some((f.to_string(), std::fs::read_to_string(p)?)));
        }
    }
    Ok(None)
}

/// A read-only mount undone on drop.
pub struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(dev: &Path, dir: &Path, fstype: &str) -> Result<Self, std::io::Error> {
        use nix::mount::MsFlags;
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        nix::mount::mount(Some(dev), dir, Some(fstype), flags, None::<&str>)
            .map_err(std::io::Error::from)?;
        Ok(ReadOnlyMount(dir.to_path_buf()))
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount(&self.0) {
            log::warn(&format!("unmounting {}: {e}", self.0.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server answering every request with `status` and `body`.
    fn serve(status: &'static str, body: &'static str, requests: usize) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().take(requests) {
                let mut s = s.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}/host.yaml")
    }

    #[test]
    fn the_command_line_url_is_fetched_first() {
        let url = serve("200 OK", "version: 1\n", 1);
        let c = Cmdline::parse(&format!("imprint.config={url}")).unwrap();
        assert_eq!(
            find_document(&c).unwrap(),
            (url, "version: 1\n".to_string())
        );
    }

    #[test]
    fn a_404_fails_at_once_with_a_clear_message() {
        let url = serve("404 Not Found", "", 1);
        let start = Instant::now();
        let e = fetch(&url, None).unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            e.contains("404") && e.contains(&url) && e.contains("imprint.config="),
            "{e}"
        );
    }

    #[test]
    fn file_urls_and_unknown_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(
            fetch(&format!("file://{}", p.display()), None).unwrap(),
            "{}"
        );
        assert!(matches!(
            fetch("tftp://x/y", None),
            Err(DiscoverError::Scheme(_))
        ));
    }

    #[test]
    fn an_embedded_document_is_used_when_no_url_is_given() {
        let c = Cmdline {
            embedded: Some(("iso".into(), "doc".into())),
            ..Cmdline::parse("").unwrap()
        };
        assert_eq!(
            find_document(&c).unwrap(),
            ("iso".to_string(), "doc".to_string())
        );
    }

    #[test]
    fn a_labelled_filesystem_is_read_through_a_loop_device() {
        // Root and loop devices are available on the build machines (see docs); the host
        // kernel mounts ext4 (vfat, used on real media, is a module only the ramdisk has).
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        std::fs::create_dir(&content).unwrap();
        std::fs::write(content.join("imprint.yaml"), "version: 1\n").unwrap();
        let img = dir.path().join("m.img");
        std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-L", LABEL, "-d"])
            .arg(&content)
            .arg(&img)
            .status()
            .unwrap();
        assert!(st.success());
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        let loopdev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        struct Detach(String);
        impl Drop for Detach {
            fn drop(&mut self) {
                let _ = std::process::Command::new("losetup")
                    .args(["-d", &self.0])
                    .status();
            }
        }
        let _guard = Detach(loopdev.clone());
        let (label, fstype) = probe_label(Path::new(&loopdev)).unwrap();
        assert_eq!((label.as_str(), fstype.as_str()), (LABEL, "ext4"));
        let mnt = dir.path().join("mnt");
        let (file, text) = read_from(Path::new(&loopdev), &fstype, &mnt)
            .unwrap()
            .unwrap();
        assert_eq!(
            (file.as_str(), text.as_str()),
            ("imprint.yaml", "version: 1\n")
        );
    }
}
