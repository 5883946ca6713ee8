//! `oci://` sources end to end: a blob of Debian's `docker-registry` streamed onto a
//! file, resumed after the registry's connection is cut mid-blob, served by a
//! pull-through cache as a mirror, and refused when the document's digest is not
//! the layer's.

use super::*;
use imprint_tests::registry::relay::Relay;
use imprint_tests::registry::{Access, Registry};

#[test]
fn a_registry_blob_is_written_byte_identical_and_reported() {
    let f = fixture();
    let reg = Registry::start(Access::Open);
    let manifest = reg.push_file("os/disk", "v1", "disk.raw.zst", &f.zst);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let url = reg.oci(&format!("os/disk:v1@{manifest}"));
    let o = stream_to(
        std::slice::from_ref(&url),
        Some(&sha(DigestAlgorithm::Sha256, &f.zst)),
        &target,
        &fast(),
    )
    .unwrap();
    assert!(std::fs::read(&target).unwrap() == f.raw);
    assert_eq!(o.compression, Compression::Zstd);
    let r = o.registry.expect("the resolution is reported");
    assert_eq!((r.manifest.as_str(), r.pinned), (manifest.as_str(), true));
    assert_eq!(r.layer.size, f.zst.len() as u64);
    assert_eq!(o.url_used, url);
}

#[test]
fn a_blob_cut_mid_way_is_resumed_with_range() {
    let f = fixture();
    let reg = Registry::start(Access::Open);
    reg.push_file("os/disk", "v1", "disk.raw.xz", &f.xz);
    // The relay passes the manifest and cuts the blob 5 MiB in.
    let relay = Relay::start(reg.port(), 5 * MIB);
    let url = format!("oci://127.0.0.1:{}/os/disk:v1", relay.port());
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let o = stream_to(
        &[url],
        Some(&sha(DigestAlgorithm::Sha256, &f.xz)),
        &target,
        &fast(),
    )
    .unwrap();
    assert_eq!(relay.cuts(), 1);
    assert_eq!(o.resumes, 1);
    assert_eq!(o.bytes_downloaded, f.xz.len() as u64);
    assert!(std::fs::read(&target).unwrap() == f.raw);
    assert!(
        !o.registry.unwrap().pinned,
        "a tag alone is reported as such"
    );
}

#[test]
fn a_pull_through_cache_serves_as_mirror_and_a_200_to_range_is_skipped() {
    let f = fixture();
    let upstream = Registry::start(Access::Open);
    let manifest = upstream.push_file("os/disk", "v1", "disk.raw.gz", &f.gz);
    let cache = Registry::start(Access::Proxy {
        remote: upstream.url(),
    });
    // The cache is cut mid-blob on its first (cold) answer; the resume's Range may be
    // answered with 200 and the whole blob, which is skipped forward.
    let relay = Relay::start(cache.port(), 3 * MIB);
    let dead = format!(
        "oci://127.0.0.1:{}/os/disk@{manifest}",
        imprint_tests::tang::free_port()
    );
    let mirror = format!("oci://127.0.0.1:{}/os/disk@{manifest}", relay.port());
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let o = stream_to(
        &[dead, mirror.clone()],
        Some(&sha(DigestAlgorithm::Sha256, &f.gz)),
        &target,
        &fast(),
    )
    .unwrap();
    assert!(std::fs::read(&target).unwrap() == f.raw);
    assert_eq!(o.url_used, mirror);
    assert_eq!((relay.cuts(), o.resumes), (1, 1));
    assert_eq!(
        o.bytes_downloaded,
        f.gz.len() as u64,
        "skipped bytes are not counted twice"
    );
}

#[test]
fn a_document_digest_that_is_not_the_layers_is_refused_before_the_download() {
    let reg = Registry::start(Access::Open);
    reg.push_file("os/disk", "v1", "disk.raw", b"a small disk");
    let url = reg.oci("os/disk:v1");
    let wrong = sha(DigestAlgorithm::Sha256, b"another disk");
    let e = probe(std::slice::from_ref(&url), Some(&wrong), &fast())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the document expects sha256:") && e.contains("nothing is downloaded"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 7);
    assert!(stream_to(&[url], Some(&wrong), &target, &fast()).is_err());
    assert!(
        std::fs::read(&target).unwrap().iter().all(|&b| b == 7),
        "nothing was written"
    );
}

#[test]
fn basic_credentials_reach_the_blob_and_not_another_registry() {
    let reg = Registry::start(Access::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    });
    let data = b"private disk ".repeat(1000);
    reg.push_file("os/disk", "v1", "disk.raw", &data);
    let dir = tempfile::tempdir().unwrap();
    let target = file_target(&dir, 0, 0);
    let with = |password: &str| WriteOptions {
        credentials: Some(crate::oci::Credentials::Password {
            username: "alice".into(),
            password: crate::secret::Secret::new(password),
        }),
        ..fast()
    };
    let digest = sha(DigestAlgorithm::Sha256, &data);
    stream_to(
        &[reg.oci("os/disk:v1")],
        Some(&digest),
        &target,
        &with("s3cret"),
    )
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap()[..data.len()], data[..]);
    let e = probe(&[reg.oci("os/disk:v1")], Some(&digest), &with("wrong"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("without valid credentials"), "{e}");
    // The same registry reached as a mirror under another host name gets nothing.
    let other = format!("oci://localhost:{}/os/disk:v1", reg.port());
    let e = probe(
        &[reg.oci("os/nothing:v1"), other],
        Some(&digest),
        &with("s3cret"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("localhost") && e.contains("give image.auth"),
        "{e}"
    );
}

#[test]
fn a_container_layer_cut_mid_way_is_resumed_and_its_codec_checked() {
    use imprint_tests::registry::layout::{Layout, LAYER_GZIP, LAYER_ZSTD};
    let f = fixture();
    let reg = Registry::start(Access::Open);
    let l = Layout::new();
    let id = format!("sha256:{}", imprint_tests::fixtures::sha256_hex(&f.raw));
    let m = l.container(&[
        (f.gz.clone(), LAYER_GZIP, id.clone()),
        (f.gz.clone(), LAYER_ZSTD, id),
    ]);
    l.tag(&m, "v1");
    reg.push_layout(l.path(), "v1", "os/app", false);
    // The relay passes the manifest and config and cuts the layer 3 MiB in.
    let relay = Relay::start(reg.port(), 3 * MIB);
    let url = format!("oci://127.0.0.1:{}/os/app@{}", relay.port(), m.digest);
    let pull = ContainerPull::new(&[url], &fast()).unwrap();
    let image = pull.check().unwrap();
    let mut out = Vec::new();
    pull.layer(&image, &image.layers[0])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert!(out == f.raw, "the layer decompressed whole");
    assert_eq!(relay.cuts(), 1, "resumed after the cut");
    let e = pull
        .layer(&image, &image.layers[1])
        .err()
        .expect("gzip bytes under a zstd type are refused")
        .to_string();
    assert!(
        e.contains("is declared application/vnd.oci.image.layer.v1.tar+zstd (zstd) but its first bytes are gzip"),
        "{e}"
    );
}

#[test]
fn container_layers_behind_bearer_tokens_are_pulled_with_a_renewed_token() {
    use imprint_tests::registry::layout::{Layout, LAYER_GZIP};
    use imprint_tests::registry::token::TokenIssuer;
    let issuer = TokenIssuer::start(&[("bob", "hunter2")], 2);
    let reg = Registry::start(Access::Token(issuer.config()));
    let plain = b"a layer's tar, or so it says ".repeat(1000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let id = format!("sha256:{}", imprint_tests::fixtures::sha256_hex(&plain));
    let l = Layout::new();
    let m = l.container(&[(gz.finish().unwrap(), LAYER_GZIP, id)]);
    l.tag(&m, "v1");
    reg.push_layout(l.path(), "v1", "os/app", false);
    let url = reg.oci(&format!("os/app@{}", m.digest));
    let with = |password: &str| WriteOptions {
        credentials: Some(crate::oci::Credentials::Password {
            username: "bob".into(),
            password: crate::secret::Secret::new(password),
        }),
        ..fast()
    };
    let e = ContainerPull::new(std::slice::from_ref(&url), &with("nope"))
        .unwrap()
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("check image.auth"), "{e}");

    let pull = ContainerPull::new(std::slice::from_ref(&url), &with("hunter2")).unwrap();
    let image = pull.check().unwrap();
    let before = issuer.requests().len();
    std::thread::sleep(Duration::from_millis(2200));
    let mut out = Vec::new();
    pull.layer(&image, &image.layers[0])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert!(out == plain);
    let asked = issuer.requests();
    assert!(asked.len() > before, "the expired token was renewed");
    assert_eq!(asked.last().unwrap().user.as_deref(), Some("bob"));
}

#[test]
fn a_docker_schema_2_image_pulls_its_docker_typed_layers() {
    use imprint_tests::registry::layout::{Layout, LAYER_GZIP};
    let reg = Registry::start(Access::Open);
    let plain = b"docker layer ".repeat(500);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let id = format!("sha256:{}", imprint_tests::fixtures::sha256_hex(&plain));
    let l = Layout::new();
    let m = l.container(&[(gz.finish().unwrap(), LAYER_GZIP, id.clone())]);
    l.tag(&m, "v1");
    reg.push_layout_as(l.path(), "v1", "os/app", false, Some("v2s2"));
    let served = reg.manifest_digest("os/app", "v1");
    let url = reg.oci(&format!("os/app@{served}"));
    let pull = ContainerPull::new(&[url], &fast()).unwrap();
    let image = pull.check().unwrap();
    let layer = &image.layers[0];
    assert_eq!(
        (layer.media_type.as_str(), layer.diff_id.as_str()),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            id.as_str()
        )
    );
    let mut out = Vec::new();
    pull.layer(&image, layer)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert!(out == plain);
}
