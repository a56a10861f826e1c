//! Fuzz targets for the parsers that meet hostile input, run in the suite:
//! each is a proptest generator with a fixed budget (`FUZZ_CASES`, default
//! 256) plus a replay of the committed corpus in `tests/fuzz-corpus/`. They
//! check that nothing panics and that what comes out keeps its promises
//! (errors name their API, no secret or unbounded text is echoed).
//! The simulator's own parsers are fuzzed in `sim::fuzz`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::cli::manifest;

/// Cases per generator and run.
pub(crate) fn budget() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The files of one corpus directory, sorted; an empty or missing
/// directory fails, so a renamed directory cannot silently test nothing.
pub(crate) fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn parse_manifest(text: &str) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    manifest::parse_text(
        Path::new("fuzz.yaml"),
        text,
        "cn-shanghai",
        &mut found,
        &mut errors,
    );
    for m in &found {
        // Whatever the reader accepts has passed validation.
        assert!(m.manifest.resolve("cn-shanghai").is_ok(), "{text:?}");
    }
    for e in &errors {
        // Every problem names the file it came from.
        assert!(e.source.starts_with("fuzz.yaml"), "{e:?}");
    }
}

fn headers(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(n, v);
        }
    }
    h
}

fn parse_error_answers(status: u16, body: &[u8], h: &HeaderMap) {
    let e = crate::provider::acs_error::map_error("ListImageLabels", status, h, body);
    assert_eq!(e.api, "ListImageLabels");
    let e = crate::provider::ims::error::map_error("ListImageTags", status, h, body);
    assert_eq!(e.api, "ListImageTags");
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = crate::provider::pai::parse_labels(v.get("Labels"));
    }
}

fn parse_sts(body: &[u8]) {
    if let Ok(c) = crate::provider::credentials::parse_sts_answer(body) {
        assert!(!c.creds.identity().is_empty());
    }
}

fn parse_authorization(value: &str) {
    if let Ok(a) = crate::sign::acs3::Authorization::parse(value) {
        let again = crate::sign::acs3::Authorization::parse(&a.to_header_value()).unwrap();
        assert_eq!(again.signed_headers, a.signed_headers);
    }
    let _ = crate::sign::sdk::Authorization::parse(value);
}

/// YAML-ish text: fragments of real manifests shuffled with noise, which
/// reaches deeper into the reader than uniform bytes.
fn manifest_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("apiVersion: imagelabel.io/v1alpha1\n".to_string()),
        Just("kind: ImageLabelSet\n".to_string()),
        Just("kind: DatasetLabelSet\n".to_string()),
        Just("metadata: {name: a, namespace: b}\n".to_string()),
        Just("spec:\n".to_string()),
        Just("  imageId: image-abc\n".to_string()),
        Just("  datasetId: d-abc\n".to_string()),
        Just("  provider: huaweicloud-ims\n".to_string()),
        Just("  labels: {system.chipType: GPU}\n".to_string()),
        Just("---\n".to_string()),
        "[ -~]{0,12}\n",
        "  [a-zA-Z]{1,10}: [\\PC]{0,10}\n",
        Just("&a [*a]\n".to_string()),
    ];
    prop::collection::vec(fragment, 0..16).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(budget()))]

    #[test]
    fn fuzz_manifest_reader(text in manifest_text()) {
        parse_manifest(&text);
    }

    #[test]
    fn fuzz_manifest_reader_bytes(text in "\\PC{0,200}") {
        parse_manifest(&text);
    }

    #[test]
    fn fuzz_error_answers(
        status in 100u16..600,
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            "\\{\"(Code|Message|RequestId|error_code|error_msg|error|Labels)\":(\"[ -~]{0,20}\"|[0-9]{1,3}|null|\\[\\]|\\{\\})\\}"
                .prop_map(String::into_bytes),
        ],
        hdrs in prop::collection::vec(("[a-z-]{1,12}", "[ -~]{0,20}"), 0..4),
    ) {
        parse_error_answers(status, &body, &headers(&hdrs));
    }

    #[test]
    fn fuzz_sts_answer(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        "\\{\"Credentials\":\\{(\"(AccessKeyId|AccessKeySecret|SecurityToken|Expiration)\":\"[ -~]{0,24}\",?){0,4}\\}\\}"
            .prop_map(String::into_bytes),
    ]) {
        parse_sts(&body);
    }

    #[test]
    fn fuzz_authorization_headers(value in prop_oneof![
        "\\PC{0,80}",
        "(ACS3|SDK)-HMAC-SHA256 ((Credential|Access|SignedHeaders|Signature)=[ -~]{0,12}[, ]{0,2}){0,5}",
    ]) {
        parse_authorization(&value);
    }
}

#[test]
fn corpus_replays() {
    for (p, b) in corpus("manifest") {
        eprintln!("{}", p.display());
        parse_manifest(&String::from_utf8_lossy(&b));
    }
    for target in ["pai-error", "ims-error"] {
        for (_, b) in corpus(target) {
            for status in [400, 404, 500] {
                parse_error_answers(status, &b, &HeaderMap::new());
            }
        }
    }
    for (_, b) in corpus("sts-answer") {
        parse_sts(&b);
    }
    for (_, b) in corpus("authorization") {
        parse_authorization(&String::from_utf8_lossy(&b));
    }
}
