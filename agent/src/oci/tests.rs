//! The registry client against Debian's `docker-registry` (distribution 2.8) started
//! on 127.0.0.1, with artifacts pushed by `skopeo`: anonymous, Basic (htpasswd) and
//! Bearer (a token issuer), by tag and by digest, indexes, and each refusal.

use super::auth::Challenge;
use super::manifest::{parse, Fetched};
use super::select::{disk_layer, platform_child};
use super::*;
use crate::arch::Arch;
use crate::secret::Secret;
use imprint_tests::registry::layout::Layout;
use imprint_tests::registry::token::TokenIssuer;
use imprint_tests::registry::{Access, Registry as TestRegistry};

fn client() -> reqwest::blocking::Client {
    crate::http::client(&Default::default()).unwrap()
}

fn open(reference: &str, credentials: Option<Credentials>) -> Registry {
    Registry::new(Reference::parse(reference).unwrap(), client(), credentials)
}

fn password(user: &str, pass: &str) -> Credentials {
    Credentials::Password {
        username: user.into(),
        password: Secret::new(pass),
    }
}

#[test]
fn references_parse_or_say_why() {
    let r = Reference::parse(
        "oci://reg.example:5000/os/debian:12@sha256:"
            .to_string()
            .as_str(),
    );
    assert!(r.unwrap_err().to_string().contains("64 lower-case hex"));
    let d = "a".repeat(64);
    let r = Reference::parse(&format!("oci://reg.example:5000/os/debian:12@sha256:{d}")).unwrap();
    assert_eq!(r.registry, "reg.example:5000");
    assert_eq!(r.repository, "os/debian");
    assert_eq!(r.tag.as_deref(), Some("12"));
    assert_eq!(r.manifest_ref(), format!("sha256:{d}"));
    assert_eq!(r.base_url(), "https://reg.example:5000");
    assert_eq!(
        r.to_string(),
        format!("oci://reg.example:5000/os/debian:12@sha256:{d}")
    );
    let r = Reference::parse("oci://127.0.0.1:5000/a/b-c__d.e:v1").unwrap();
    assert_eq!(
        (r.repository.as_str(), r.manifest_ref().as_str()),
        ("a/b-c__d.e", "v1")
    );
    assert_eq!(r.base_url(), "http://127.0.0.1:5000");
    for (bad, why) in [
        ("oci://reg/os/debian", "neither a tag nor a digest"),
        ("oci://reg/Os:1", "lower-case"),
        ("oci://reg:99999/os:1", "port"),
        ("oci://reg", "no repository"),
        ("oci://reg/os:-x", "tag"),
        ("http://reg/os:1", "oci://"),
        ("oci://reg/os@md5:00", "sha256 or sha512"),
    ] {
        let e = Reference::parse(bad).unwrap_err().to_string();
        assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
    }
}

#[test]
fn challenges_parse() {
    let c = Challenge::parse(
        r#"Bearer realm="http://127.0.0.1:5002/token",service="test registry",scope="repository:a/b:pull,push",error="insufficient_scope""#,
    )
    .unwrap();
    assert_eq!(c.scheme, "bearer");
    assert_eq!(c.param("realm"), Some("http://127.0.0.1:5002/token"));
    assert_eq!(c.param("service"), Some("test registry"));
    assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
    assert_eq!(c.param("error"), Some("insufficient_scope"));
    let b = Challenge::parse(r#"Basic realm="basic-realm""#).unwrap();
    assert_eq!(
        (b.scheme.as_str(), b.param("realm")),
        ("basic", Some("basic-realm"))
    );
}

fn manifest(json: &str) -> super::manifest::ImageManifest {
    match parse(json.as_bytes(), Some(manifest::OCI_MANIFEST)).unwrap() {
        Fetched::Manifest(m) => *m,
        Fetched::Index(_) => panic!("not a manifest"),
    }
}

const CFG: &str = r#""config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}"#;

fn layer(n: u8, title: Option<&str>) -> String {
    let ann = title.map_or(String::new(), |t| {
        format!(r#","annotations":{{"org.opencontainers.image.title":"{t}"}}"#)
    });
    format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{n}{ann}}}"#,
        format!("{n:02x}").repeat(32)
    )
}

#[test]
fn the_layer_rules_pick_one_or_list_them_all() {
    let one = manifest(&format!(
        r#"{{"schemaVersion":2,{CFG},"layers":[{}]}}"#,
        layer(1, None)
    ));
    assert_eq!(disk_layer(&one).unwrap().size, 1);
    let titled = manifest(&format!(
        r#"{{"schemaVersion":2,{CFG},"layers":[{},{}]}}"#,
        layer(1, None),
        layer(2, Some("disk.raw.zst"))
    ));
    assert_eq!(disk_layer(&titled).unwrap().size, 2);
    let two = manifest(&format!(
        r#"{{"schemaVersion":2,{CFG},"layers":[{},{}]}}"#,
        layer(1, Some("a.raw")),
        layer(2, Some("b.raw"))
    ));
    let e = disk_layer(&two).unwrap_err();
    assert!(
        e.contains("2 layers") && e.contains("\"a.raw\"") && e.contains("\"b.raw\""),
        "{e}"
    );
    let container = manifest(&format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":3}},"layers":[{}]}}"#,
        "0".repeat(64),
        layer(1, None)
    ));
    assert!(disk_layer(&container)
        .unwrap_err()
        .contains("container image"));
    let served_as = parse(b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}", Some(manifest::OCI_MANIFEST));
    assert!(served_as.unwrap_err().contains("served it as"));
    assert!(parse(b"{\"schemaVersion\":1}", None)
        .unwrap_err()
        .contains("schema 1"));
}

#[test]
fn the_index_child_is_linux_amd64_ranked_by_disktype() {
    let entry = |n: u8, arch: &str, disktype: Option<&str>| {
        let ann = disktype.map_or(String::new(), |t| {
            format!(r#","annotations":{{"disktype":"{t}"}}"#)
        });
        format!(
            r#"{{"mediaType":"{}","digest":"sha256:{}","size":{n},"platform":{{"os":"linux","architecture":"{arch}"}}{ann}}}"#,
            manifest::OCI_MANIFEST,
            format!("{n:02x}").repeat(32)
        )
    };
    let index = |entries: Vec<String>| match parse(
        format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            entries.join(",")
        )
        .as_bytes(),
        Some(manifest::OCI_INDEX),
    )
    .unwrap()
    {
        Fetched::Index(i) => i,
        Fetched::Manifest(_) => panic!("not an index"),
    };
    let ix = index(vec![entry(1, "arm64", None), entry(2, "x86_64", None)]);
    assert_eq!(platform_child(&ix, Arch::X86_64).unwrap().size, 2);
    let ix = index(vec![
        entry(1, "amd64", Some("qcow2")),
        entry(2, "amd64", Some("raw")),
    ]);
    assert_eq!(platform_child(&ix, Arch::X86_64).unwrap().size, 2);
    let ix = index(vec![entry(1, "amd64", None), entry(2, "amd64", None)]);
    assert!(platform_child(&ix, Arch::X86_64)
        .unwrap_err()
        .contains("2 linux/amd64 entries"));
    let ix = index(vec![entry(1, "arm64", None)]);
    let e = platform_child(&ix, Arch::X86_64).unwrap_err();
    assert!(
        e.contains("no linux/amd64") && e.contains("linux/arm64"),
        "{e}"
    );
    // An arm64 machine takes the arm64 entry of the same index.
    let ix = index(vec![entry(1, "arm64", None), entry(2, "amd64", None)]);
    assert_eq!(platform_child(&ix, Arch::Aarch64).unwrap().size, 1);
}

#[test]
fn anonymous_pull_by_tag_and_by_digest() {
    let reg = TestRegistry::start(Access::Open);
    let data = b"not really a disk image".repeat(100);
    let digest = reg.push_file("demo/disk", "v1", "disk.raw", &data);
    assert_eq!(
        digest,
        reg.manifest_digest("demo/disk", "v1"),
        "skopeo kept the manifest"
    );
    let layer = format!("sha256:{}", imprint_tests::fixtures::sha256_hex(&data));

    let by_tag = resolve(&open(&reg.oci("demo/disk:v1"), None)).unwrap();
    assert_eq!(
        (by_tag.manifest.as_str(), by_tag.pinned),
        (digest.as_str(), false)
    );
    assert_eq!(by_tag.layer.digest, layer);
    assert_eq!(by_tag.layer.size, data.len() as u64);
    assert_eq!(by_tag.layer.title.as_deref(), Some("disk.raw"));

    let pinned = resolve(&open(&reg.oci(&format!("demo/disk:v1@{digest}")), None)).unwrap();
    assert_eq!(
        (pinned.manifest.as_str(), pinned.pinned),
        (digest.as_str(), true)
    );

    // A digest the tag's manifest does not have: refused, and not found by digest.
    let other = reg.push_file("demo/disk", "v2", "disk.raw", b"another image");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let e = resolve(&open(&reg.oci(&format!("demo/disk@{wrong}")), None)).unwrap_err();
    assert!(
        e.to_string()
            .contains("has no manifest in repository demo/disk"),
        "{e}"
    );
    assert!(e.to_string().contains("MANIFEST_UNKNOWN"), "{e}");
    let pinned_other = resolve(&open(&reg.oci(&format!("demo/disk:v1@{other}")), None)).unwrap();
    assert_eq!(pinned_other.manifest, other, "the digest wins over the tag");

    let e = resolve(&open(&reg.oci("demo/disk:nope"), None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("registry {} has no manifest", reg.host()))
            && e.contains("(reference nope)")
            && e.contains("MANIFEST_UNKNOWN: manifest unknown"),
        "{e}"
    );
}

#[test]
fn the_served_manifest_must_have_the_pinned_digest() {
    // The registry is asked for the digest and answers with it, so a mismatch needs
    // a registry serving other bytes: a pull-through cache of an upstream whose tag
    // moved is one; here the pin is checked against bytes fetched by tag.
    let reg = TestRegistry::start(Access::Open);
    reg.push_file("demo/disk", "v1", "disk.raw", b"first");
    let r = open(&reg.oci("demo/disk:v1"), None);
    let want = digest::of(crate::plan::DigestAlgorithm::Sha256, b"something else");
    let e = r.manifest("v1", Some(&want)).err().unwrap().to_string();
    assert!(
        e.contains("the manifest served") && e.contains("nothing is written"),
        "{e}"
    );
}

#[test]
fn an_index_gives_the_child_for_this_machines_architecture() {
    let reg = TestRegistry::start(Access::Open);
    let l = Layout::new();
    let amd = l.artifact("disk.x86_64.raw", b"amd64 disk");
    let arm = l.artifact("disk.aarch64.raw", b"arm64 disk");
    let ix = l.index(&[(&arm, "linux", "arm64"), (&amd, "linux", "amd64")]);
    l.tag(&ix, "multi");
    reg.push_layout(l.path(), "multi", "demo/multi", true);
    let served = reg.manifest_digest("demo/multi", "multi");
    let r = resolve(&open(&reg.oci(&format!("demo/multi@{served}")), None)).unwrap();
    assert_eq!(r.index.as_deref(), Some(served.as_str()));
    let (ours, title) = match crate::arch::Arch::host() {
        crate::arch::Arch::X86_64 => (&amd, "disk.x86_64.raw"),
        crate::arch::Arch::Aarch64 => (&arm, "disk.aarch64.raw"),
    };
    assert_eq!(
        r.manifest, ours.digest,
        "the child's digest is kept by the copy"
    );
    assert_eq!(r.layer.title.as_deref(), Some(title));
}

#[test]
fn basic_auth_with_the_right_and_a_wrong_password() {
    let reg = TestRegistry::start(Access::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    });
    let digest = reg.push_file("demo/disk", "v1", "disk.raw", b"private disk");
    let ok = resolve(&open(
        &reg.oci("demo/disk:v1"),
        Some(password("alice", "s3cret")),
    ))
    .unwrap();
    assert_eq!(ok.manifest, digest);
    let e = resolve(&open(
        &reg.oci("demo/disk:v1"),
        Some(password("alice", "wrong")),
    ))
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("without valid credentials") && msg.contains("UNAUTHORIZED"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong"),
        "the password is never in a message: {msg}"
    );
    let e = resolve(&open(&reg.oci("demo/disk:v1"), None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("give image.auth"), "{e}");
}

#[test]
fn bearer_tokens_anonymous_with_a_password_and_renewed_when_expired() {
    let issuer = TokenIssuer::start(&[("bob", "hunter2")], 3);
    let reg = TestRegistry::start(Access::Token(issuer.config()));
    let digest = reg.push_file("demo/disk", "v1", "disk.raw", b"token-protected disk");

    let anon = open(&reg.oci("demo/disk:v1"), None);
    assert_eq!(resolve(&anon).unwrap().manifest, digest);
    let asked = issuer.requests();
    let last = asked.last().unwrap();
    assert!(
        last.query.contains("scope=repository%3Ademo%2Fdisk%3Apull"),
        "{:?}",
        last
    );
    assert_eq!((last.user.as_deref(), last.status), (None, 200));

    let bob = open(&reg.oci("demo/disk:v1"), Some(password("bob", "hunter2")));
    assert_eq!(resolve(&bob).unwrap().manifest, digest);
    assert_eq!(
        issuer.requests().last().unwrap().user.as_deref(),
        Some("bob")
    );
    let before = issuer.requests().len();
    assert!(
        bob.authorization().unwrap().is_some(),
        "the token is cached"
    );
    assert_eq!(issuer.requests().len(), before);
    std::thread::sleep(std::time::Duration::from_millis(3200));
    assert!(bob.authorization().unwrap().is_some());
    assert_eq!(
        issuer.requests().len(),
        before + 1,
        "an expired token is fetched anew"
    );
    assert_eq!(resolve(&bob).unwrap().manifest, digest);

    let wrong = open(&reg.oci("demo/disk:v1"), Some(password("bob", "nope")));
    let e = resolve(&wrong).unwrap_err().to_string();
    assert!(
        e.contains("answered HTTP 401 to a token request") && e.contains("check image.auth"),
        "{e}"
    );
}

#[test]
fn container_layers_pair_media_types_with_diff_ids() {
    use super::container::{layer_codec, layers, LayerCodec};
    for (t, c) in [
        ("application/vnd.oci.image.layer.v1.tar", LayerCodec::Tar),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            LayerCodec::Gzip,
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            LayerCodec::Zstd,
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            LayerCodec::Gzip,
        ),
    ] {
        assert_eq!(layer_codec(t), Ok(c), "{t}");
    }
    for (t, why) in [
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "non-distributable",
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "non-distributable",
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+xz",
            "not a tar layer",
        ),
        ("application/octet-stream", "not a tar layer"),
    ] {
        let e = layer_codec(t).unwrap_err();
        assert!(e.contains(why) && e.contains(t), "{t}: {e}");
    }
    let image = |layers: &[String]| {
        manifest(&format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":9}},"layers":[{}]}}"#,
            "c".repeat(64),
            layers.join(",")
        ))
    };
    let diff = |n: u8| format!(r#""sha256:{}""#, format!("{n:02x}").repeat(32));
    let config = |ids: &[String]| {
        format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            ids.join(",")
        )
    };
    let m = image(&[layer(1, None), layer(2, None)]);
    let got = layers(&m, config(&[diff(11), diff(12)]).as_bytes()).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].diff_id, format!("sha256:{}", "0c".repeat(32)));
    assert_eq!(got[0].codec, LayerCodec::Tar);
    for (cfg, why) in [
        (
            config(&[diff(11)]),
            "2 layers but its config lists 1 diff_ids",
        ),
        (
            config(&[diff(11), r#""sha256:short""#.into()]),
            "the diff_id of its layer 2",
        ),
        (
            r#"{"rootfs":{"type":"other","diff_ids":[]}}"#.into(),
            "not \"layers\"",
        ),
        ("{}".into(), "is not an image config"),
    ] {
        let e = layers(&m, cfg.as_bytes()).unwrap_err();
        assert!(e.contains(why), "{why}: {e}");
    }
    let foreign = layer(3, None).replace(
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    );
    let e = layers(
        &image(&[layer(1, None), foreign]),
        config(&[diff(1), diff(2)]).as_bytes(),
    )
    .unwrap_err();
    assert!(
        e.contains("its layer 2 (sha256:0303") && e.contains("foreign"),
        "{e}"
    );
}

#[test]
fn a_container_image_resolves_to_its_config_and_layers() {
    use imprint_tests::registry::layout::{LAYER_GZIP, LAYER_TAR};
    let reg = TestRegistry::start(Access::Open);
    let l = Layout::new();
    let id = |b: &[u8]| format!("sha256:{}", imprint_tests::fixtures::sha256_hex(b));
    let a = b"first layer".to_vec();
    let b = {
        use std::io::Write;
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(b"uncompressed second").unwrap();
        g.finish().unwrap()
    };
    let m = l.container(&[
        (a.clone(), LAYER_TAR, id(&a)),
        (b.clone(), LAYER_GZIP, id(b"uncompressed second")),
    ]);
    l.tag(&m, "v1");
    reg.push_layout(l.path(), "v1", "apps/web", false);
    // skopeo compresses the uncompressed layer on its way to a registry: a new manifest,
    // the same diff_ids.
    let served = reg.manifest_digest("apps/web", "v1");
    assert_ne!(served, m.digest);
    let image = resolve_container(&open(&reg.oci(&format!("apps/web:v1@{served}")), None)).unwrap();
    assert_eq!(image.manifest, served);
    assert_eq!(image.layers.len(), 2);
    assert_eq!(image.layers[0].diff_id, id(&a));
    assert_eq!(
        (image.layers[1].digest.as_str(), image.layers[1].codec),
        (id(&b).as_str(), LayerCodec::Gzip)
    );
    assert_eq!(image.layers[1].diff_id, id(b"uncompressed second"));
    assert!(image.config.starts_with("sha256:"));

    // A disk image artifact is not a container image, and says what to do.
    let disk = reg.push_file("apps/disk", "v1", "disk.raw", b"a disk");
    let e = resolve_container(&open(&reg.oci(&format!("apps/disk@{disk}")), None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is not a container image") && e.contains("format: disk"),
        "{e}"
    );
}
