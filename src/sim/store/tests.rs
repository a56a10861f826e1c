use super::*;

fn store() -> Store {
    Store::from_seed(
        &SeedConfig::from_yaml(
            r#"
pai:
  images:
    - {id: img-a, workspaceId: "1", labels: {system.chipType: GPU, system.official: "true"}}
    - {id: img-b, workspaceId: "2", labels: {system.chipType: CPU}}
  datasets:
    - {id: d-1, labels: {team: ml}, versions: [{name: v1, labels: {stage: raw}}]}
ims:
  images:
    - {id: ims-1, projectId: p1, tags: {env: prod}}
"#,
        )
        .unwrap(),
    )
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tags(pairs: &[(&str, Option<&str>)]) -> Vec<ImsTagInput> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

#[test]
fn list_filters_by_image_workspace_keys_and_label_filter() {
    let s = store();
    let q = |image: Option<&str>, ws: Option<&str>, keys: Option<&str>, filter: &str| ImageQuery {
        image_id: image.map(str::to_string),
        workspace_id: ws.map(str::to_string),
        label_keys: keys.map(split_keys),
        label_filter: parse_label_filter(filter).unwrap(),
    };
    assert_eq!(
        s.list_image_labels(&q(Some("img-a"), None, None, ""))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.list_image_labels(&q(Some("img-a"), None, Some("system.official"), ""))
            .unwrap(),
        kv(&[("system.official", "true")])
    );
    assert_eq!(
        s.list_image_labels(&q(None, None, Some("system.chipType"), ""))
            .unwrap(),
        kv(&[("system.chipType", "CPU"), ("system.chipType", "GPU")])
    );
    assert_eq!(
        s.list_image_labels(&q(None, Some("2"), None, "")).unwrap(),
        kv(&[("system.chipType", "CPU")])
    );
    assert_eq!(
        s.list_image_labels(&q(None, None, None, "system.official=true"))
            .unwrap()
            .len(),
        2
    );
    assert!(
        s.list_image_labels(&q(Some("img-a"), Some("2"), None, ""))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.list_image_labels(&q(Some("nope"), None, None, "")),
        Err(StoreError::ImageNotFound("nope".into()))
    );
    assert!(parse_label_filter("novalue").is_err());
}

#[test]
fn pai_image_label_rules() {
    let mut s = store();
    s.add_image_labels(
        "img-a",
        &kv(&[("system.chipType", "NPU"), ("system.origin", "")]),
    )
    .unwrap();
    assert_eq!(
        s.pai_image("img-a").unwrap().labels["system.chipType"],
        "NPU"
    );
    assert_eq!(s.pai_image("img-a").unwrap().labels["system.origin"], "");
    let bad = |s: &mut Store, labels: Vec<(String, String)>| {
        matches!(
            s.add_image_labels("img-a", &labels),
            Err(StoreError::Invalid(_))
        )
    };
    assert!(bad(&mut s, kv(&[("team", "x")])));
    assert!(bad(&mut s, kv(&[("system.official", "x")])));
    assert!(bad(&mut s, vec![]));
    // Keys the seed adds to the documented list, as the cloud may.
    let long = |n: usize| format!("system.{}", "k".repeat(n));
    let many: Vec<_> = (0..101)
        .map(|i| (format!("system.k{i}"), "v".to_string()))
        .collect();
    s.extra_pai_image_keys.extend(
        many.iter()
            .map(|(k, _)| k.clone())
            .chain([long(121), long(122)]),
    );
    assert!(bad(&mut s, vec![(long(122), "v".into())]));
    assert!(!bad(&mut s, vec![(long(121), "v".repeat(256))]));
    assert!(bad(&mut s, vec![("system.source".into(), "v".repeat(257))]));
    assert!(bad(&mut s, many.clone()));
    assert!(!bad(&mut s, many[..100].to_vec()));
    // A rejected request changes nothing.
    let before = s.pai_image("img-a").unwrap().clone();
    assert!(bad(&mut s, kv(&[("system.source", "1"), ("nope", "2")])));
    assert_eq!(s.pai_image("img-a").unwrap(), &before);
    s.remove_image_label("img-a", "system.chipType").unwrap();
    s.remove_image_label("img-a", "system.chipType").unwrap();
    assert!(
        !s.pai_image("img-a")
            .unwrap()
            .labels
            .contains_key("system.chipType")
    );
    assert_eq!(
        s.add_image_labels("zz", &kv(&[("system.a", "b")])),
        Err(StoreError::ImageNotFound("zz".into()))
    );
}

#[test]
fn dataset_and_version_labels() {
    let mut s = store();
    s.create_dataset_labels("d-1", &kv(&[("owner", "me"), ("team", "cv")]))
        .unwrap();
    assert_eq!(
        s.dataset("d-1").unwrap().labels,
        kv(&[("owner", "me"), ("team", "cv")]).into_iter().collect()
    );
    for bad in [
        ("acs:x", "1"),
        ("aliyunx", "1"),
        ("https://x", "1"),
        ("k", ""),
        ("k", "a,b"),
    ] {
        assert!(
            matches!(
                s.create_dataset_labels("d-1", &kv(&[bad])),
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    let many: Vec<_> = (0..101)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    assert!(matches!(
        s.create_dataset_labels("d-1", &many),
        Err(StoreError::Invalid(_))
    ));
    s.delete_dataset_labels("d-1", &["owner".into(), "missing".into()])
        .unwrap();
    assert!(matches!(
        s.delete_dataset_labels("d-1", &[]),
        Err(StoreError::Invalid(_))
    ));
    s.create_version_labels("d-1", "v1", &kv(&[("stage", "clean")]))
        .unwrap();
    assert_eq!(s.dataset_version("d-1", "v1").unwrap()["stage"], "clean");
    s.delete_version_labels("d-1", "v1", &["stage".into()])
        .unwrap();
    assert!(s.dataset_version("d-1", "v1").unwrap().is_empty());
    assert_eq!(
        s.create_version_labels("d-1", "v9", &kv(&[("a", "b")])),
        Err(StoreError::VersionNotFound {
            dataset_id: "d-1".into(),
            version: "v9".into()
        })
    );
    assert_eq!(
        s.delete_dataset_labels("d-9", &["a".into()]),
        Err(StoreError::DatasetNotFound("d-9".into()))
    );
    s.create_dataset_labels("d-1", &many[..100]).unwrap();
}

#[test]
fn ims_tag_rules() {
    let mut s = store();
    s.ims_create_tags("p1", "ims-1", &tags(&[("env", Some("prod"))]))
        .unwrap();
    s.ims_create_tags(
        "p1",
        "ims-1",
        &tags(&[("env", Some("dev")), ("empty", Some(""))]),
    )
    .unwrap();
    assert_eq!(s.ims_tags("p1", "ims-1").unwrap()["env"], "dev");
    let invalid = |s: &mut Store, t: Vec<ImsTagInput>| {
        matches!(
            s.ims_create_tags("p1", "ims-1", &t),
            Err(StoreError::Invalid(_))
        )
    };
    assert!(invalid(&mut s, tags(&[("", Some("v"))])));
    assert!(invalid(&mut s, tags(&[(&"k".repeat(37), Some("v"))])));
    assert!(!invalid(
        &mut s,
        tags(&[(&"k".repeat(36), Some(&"v".repeat(43)))])
    ));
    assert!(invalid(&mut s, tags(&[("k", Some(&"v".repeat(44)))])));
    assert!(invalid(&mut s, tags(&[("k", None)])));
    assert!(invalid(&mut s, tags(&[("a", Some("1")), ("a", Some("2"))])));
    assert!(invalid(&mut s, tags(&[("a/b", Some("1"))])));
    assert!(invalid(&mut s, tags(&[("_sys_x", Some("1"))])));
    for bad in [
        (" k", "v"),
        ("k", "v "),
        ("a=b", "v"),
        ("k", "a=b"),
        ("ü", "v"),
    ] {
        assert!(invalid(&mut s, tags(&[(bad.0, Some(bad.1))])), "{bad:?}");
    }
    assert!(!invalid(&mut s, tags(&[("team ml", Some("a/b"))])));
    // 10 tags at most, counted after the request; overwrites are free.
    let have = s.ims_tags("p1", "ims-1").unwrap().len();
    let fill: Vec<ImsTagInput> = (have..10)
        .map(|i| (format!("k{i}"), Some("v".to_string())))
        .collect();
    s.ims_create_tags("p1", "ims-1", &fill).unwrap();
    assert_eq!(s.ims_tags("p1", "ims-1").unwrap().len(), 10);
    assert!(matches!(
        s.ims_create_tags("p1", "ims-1", &tags(&[("one-more", Some(""))])),
        Err(StoreError::TooManyTags(_))
    ));
    s.ims_create_tags("p1", "ims-1", &tags(&[("env", Some("qa"))]))
        .unwrap();
    // Batch delete: lengths only, missing keys fine.
    let long_key = "ü".repeat(127);
    s.ims_delete_tags(
        "p1",
        "ims-1",
        &tags(&[("env", None), ("nope", Some("x")), (&long_key, None)]),
    )
    .unwrap();
    assert!(matches!(
        s.ims_delete_tags("p1", "ims-1", &tags(&[(&"k".repeat(128), None)])),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.ims_delete_tags("p1", "ims-1", &tags(&[("  ", None)])),
        Err(StoreError::Invalid(_))
    ));
    // DeleteImageTag: one key, and it must be there.
    s.ims_delete_tag("p1", "ims-1", "k9").unwrap();
    assert_eq!(
        s.ims_delete_tag("p1", "ims-1", "k9"),
        Err(StoreError::TagNotFound("k9".into()))
    );
    assert_eq!(
        s.ims_tags("p2", "ims-1"),
        Err(StoreError::ImsImageNotFound("ims-1".into()))
    );
}
