//! The payload rules (the OpenPGP layer is tested with real gpg/skopeo output in
//! `trust/openpgp/message/tests.rs`).

use super::*;

const D: &str = "sha256:3fa84557aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn payload(identity: &str, digest: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{identity}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"atomic container signature"}},"optional":{{"creator":"atomic 5.23.1","timestamp":1796192284}}}}"#
    )
    .into_bytes()
}

fn tag_ref() -> Reference {
    Reference::parse("oci://127.0.0.1:5000/os/web:v1").unwrap()
}

#[test]
fn skopeos_payload_for_the_tag_is_accepted_on_any_registry_host() {
    let p = payload("127.0.0.1:5000/os/web:v1", D);
    assert_eq!(check_payload(&p, &tag_ref(), D), Ok(()));
    let mirror = Reference::parse("oci://mirror.example:5000/os/web:v1").unwrap();
    assert_eq!(check_payload(&p, &mirror, D), Ok(()));
}

#[test]
fn another_digest_repository_or_tag_is_refused() {
    let e = check_payload(&payload("127.0.0.1:5000/os/web:v1", OTHER), &tag_ref(), D).unwrap_err();
    assert!(
        e.contains(&format!("it signs manifest {OTHER}, not {D}")),
        "{e}"
    );
    let e = check_payload(&payload("127.0.0.1:5000/os/db:v1", D), &tag_ref(), D).unwrap_err();
    assert!(e.contains("names repository os/db, not os/web"), "{e}");
    let e = check_payload(&payload("127.0.0.1:5000/os/web:v0", D), &tag_ref(), D).unwrap_err();
    assert!(e.contains("names tag v0, not v1"), "{e}");
    // A pinned reference needs the repository only: the digest binds the image.
    let pinned = Reference::parse(&format!("oci://127.0.0.1:5000/os/web@{D}")).unwrap();
    assert_eq!(
        check_payload(&payload("127.0.0.1:5000/os/web:v0", D), &pinned, D),
        Ok(())
    );
}

#[test]
fn critical_is_read_strictly_and_optional_freely() {
    let strict = |text: &str| check_payload(text.as_bytes(), &tag_ref(), D);
    let unknown = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/os/web:v1"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"atomic container signature","extra":1}}}}"#
    );
    assert!(strict(&unknown)
        .unwrap_err()
        .contains("unknown field `extra`"));
    let duplicate = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/os/web:v1"}},"image":{{"docker-manifest-digest":"{D}","docker-manifest-digest":"{OTHER}"}},"type":"atomic container signature"}}}}"#
    );
    assert!(strict(&duplicate).unwrap_err().contains("duplicate field"));
    let cosign = String::from_utf8(payload("127.0.0.1:5000/os/web:v1", D))
        .unwrap()
        .replace(SIGNATURE_TYPE, "cosign container image signature");
    assert!(strict(&cosign)
        .unwrap_err()
        .contains("not \"atomic container signature\""));
    let no_optional = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/os/web:v1"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"atomic container signature"}},"optional":null}}"#
    );
    assert_eq!(strict(&no_optional), Ok(()));
    assert!(strict("not json").is_err());
}

#[test]
fn identities_are_normalized_like_docker_references() {
    assert_eq!(
        split_identity("docker.io/library/debian:12"),
        Some(("library/debian".into(), Some("12")))
    );
    assert_eq!(
        split_identity("debian:12"),
        Some(("library/debian".into(), Some("12")))
    );
    assert_eq!(
        split_identity("localhost/os/web@sha256:00"),
        Some(("os/web".into(), None))
    );
    assert_eq!(
        split_identity("quay.io:443/os/web:v1@sha256:00"),
        Some(("os/web".into(), Some("v1")))
    );
    assert_eq!(split_identity(""), None);
}

#[test]
fn signature_urls_follow_the_lookaside_layout() {
    let p = Policy {
        lookaside: "http://sigs.example/store/".into(),
        keys: TrustRoot::default(),
        listed: false,
        ca_bundle: None,
    };
    assert_eq!(
        p.signature_url("os/web", D, 2),
        format!(
            "http://sigs.example/store/os/web@sha256={}/signature-2",
            &D[7..]
        )
    );
}
