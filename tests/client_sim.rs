//! Our own clients against the simulator, in the scenarios the official
//! Python SDKs run in tests/sdk/: every PAI label call with AccessKey, STS
//! token, bearer and RRSA credentials; IMS with AK/SK and temporary AK/SK;
//! wrong secrets rejected.

use std::collections::BTreeMap;
use std::sync::Arc;

use imagelabel::engine;
use imagelabel::plan::Plan;
use imagelabel::provider::credentials::{CredentialSource, Credentials, StaticSource};
use imagelabel::provider::ims::{ImsClient, TagAction};
use imagelabel::provider::pai::{Answer, ListImageLabelsRequest, PaiClient, parse_labels};
use imagelabel::provider::registry::{CloudConfig, Clouds};
use imagelabel::provider::{ErrorKind, Target};
use imagelabel::sim::{DatasetSeed, Sim, SimHandle, VersionSeed};

const IMAGE: &str = "image-4c62abc53uor";
const DATASET: &str = "d-ml6k2q9h3v7x";
const PROJECT: &str = "fd73a4a14a4a4dfb9771a8475e5198ea";
const IMS_IMAGE: &str = "67e17426-359e-49fb-aa12-0bd1756ec240";

async fn sim() -> (SimHandle, Clouds) {
    let mut seed = imagelabel::sim::SeedConfig::demo();
    // Path encoding needs a key with `/` and a space; no documented key has
    // one, so this cloud has gained it.
    seed.pai.extra_image_label_keys.push(TRICKY_KEY.into());
    let handle = Sim::from_seed(seed)
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let clouds = Clouds::new(CloudConfig::with_base_url(&handle.base_url())).unwrap();
    (handle, clouds)
}

fn source(c: Credentials) -> Arc<dyn CredentialSource> {
    Arc::new(StaticSource(c))
}

fn access_key() -> Credentials {
    Credentials::AccessKey {
        id: "testAK".into(),
        secret: "testSecret".into(),
        security_token: None,
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn as_map(labels: &[imagelabel::provider::pai::Label]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect()
}

/// The dataset of tests/sdk_conformance.rs's seed, with its version name
/// that needs percent-encoding in the path.
const SDK_DATASET: &str = "d-sdk0test0001";
const SDK_VERSION: &str = "v 1/β";
/// A key with a space and a `/`: percent-encoded in RemoveImageLabels' path.
const TRICKY_KEY: &str = "system.team ml/ops";

fn labels_map(p: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs(p).into_iter().collect()
}

fn image_labels_in_sim(sim: &Sim) -> BTreeMap<String, String> {
    sim.labels_of(&Target::PaiImage {
        image_id: IMAGE.into(),
        workspace_id: None,
    })
    .unwrap()
}

/// The same steps, keys, values and version name as tests/sdk/test_pai_sdk.py.
async fn pai_scenario(pai: &PaiClient, sim: &Sim, who: &str) {
    sim.add_dataset(DatasetSeed {
        id: SDK_DATASET.into(),
        name: "sdk-dataset".into(),
        workspace_id: Some("12345".into()),
        labels: labels_map(&[("owner", "seed")]),
        versions: vec![VersionSeed {
            name: SDK_VERSION.into(),
            labels: BTreeMap::new(),
        }],
    });

    let added = pai
        .add_image_labels(
            IMAGE,
            &pairs(&[
                ("system.framework", "XGBoost 1.6.0"),
                ("system.chipType", "GPU"),
                (TRICKY_KEY, "α β"),
            ]),
        )
        .await
        .unwrap_or_else(|e| panic!("{who}: add: {e}"));
    assert!(added.request_id.is_some(), "{who}: RequestId");
    assert_eq!(
        image_labels_in_sim(sim).get(TRICKY_KEY).map(String::as_str),
        Some("α β"),
        "{who}"
    );

    let by_id = pai
        .list_image_labels(&ListImageLabelsRequest {
            image_id: Some(IMAGE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let labels = as_map(&by_id.labels);
    assert_eq!(labels, image_labels_in_sim(sim), "{who}");
    assert_eq!(by_id.total_count, Some(by_id.labels.len() as u64), "{who}");

    // Two keys, sent comma-separated in one LabelKeys parameter.
    let by_keys = pai
        .list_image_labels(&ListImageLabelsRequest {
            image_id: Some(IMAGE.into()),
            label_keys: vec!["system.chipType".into(), "system.framework".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        as_map(&by_keys.labels),
        labels_map(&[
            ("system.chipType", "GPU"),
            ("system.framework", "XGBoost 1.6.0")
        ]),
        "{who}"
    );

    // A filter value with a space and `=`/`,` separators in the query.
    let filter = "system.framework=XGBoost 1.6.0,system.chipType=GPU";
    let by_filter = pai
        .list_image_labels(&ListImageLabelsRequest {
            label_filter: Some(filter.into()),
            label_keys: vec!["system.chipType".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        as_map(&by_filter.labels),
        labels_map(&[("system.chipType", "GPU")]),
        "{who}: filter with a space"
    );
    let none = pai
        .list_image_labels(&ListImageLabelsRequest {
            label_filter: Some("system.framework=XGBoost 9".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.labels.is_empty(), "{who}");
    assert_eq!(none.total_count, Some(0), "{who}");

    // One key per call; `/` and spaces in the key are percent-encoded in the path.
    pai.remove_image_label(IMAGE, TRICKY_KEY).await.unwrap();
    pai.remove_image_label(IMAGE, "system.chipType")
        .await
        .unwrap();
    let after = image_labels_in_sim(sim);
    assert!(
        !after.contains_key(TRICKY_KEY) && !after.contains_key("system.chipType"),
        "{who}: removed: {after:?}"
    );
    let listed = pai
        .list_image_labels(&ListImageLabelsRequest {
            image_id: Some(IMAGE.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(as_map(&listed.labels), after, "{who}");
    // Removing a missing key succeeds.
    pai.remove_image_label(IMAGE, "system.chipType")
        .await
        .unwrap_or_else(|e| panic!("{who}: removing a missing key: {e}"));
    pai.get_image(IMAGE, Some(true)).await.unwrap();

    let dataset_labels = |a: Answer| as_map(&parse_labels(a.body.get("Labels")));
    pai.create_dataset_labels(SDK_DATASET, &pairs(&[("team", "ml ops"), ("stage", "raw")]))
        .await
        .unwrap();
    assert_eq!(
        dataset_labels(pai.get_dataset(SDK_DATASET).await.unwrap()),
        labels_map(&[("team", "ml ops"), ("stage", "raw"), ("owner", "seed")]),
        "{who}"
    );
    pai.delete_dataset_labels(
        SDK_DATASET,
        &["team".into(), "stage".into(), "never-there".into()],
    )
    .await
    .unwrap();
    assert_eq!(
        dataset_labels(pai.get_dataset(SDK_DATASET).await.unwrap()),
        labels_map(&[("owner", "seed")]),
        "{who}"
    );

    let version = Target::PaiDatasetVersion {
        dataset_id: SDK_DATASET.into(),
        version: SDK_VERSION.into(),
    };
    pai.create_dataset_version_labels(SDK_DATASET, SDK_VERSION, &pairs(&[("quality", "gold")]))
        .await
        .unwrap();
    assert_eq!(
        dataset_labels(
            pai.get_dataset_version(SDK_DATASET, SDK_VERSION)
                .await
                .unwrap()
        ),
        labels_map(&[("quality", "gold")]),
        "{who}"
    );
    assert_eq!(
        sim.labels_of(&version),
        Some(labels_map(&[("quality", "gold")])),
        "{who}: the labels reached the version named {SDK_VERSION:?}"
    );
    pai.delete_dataset_version_labels(SDK_DATASET, SDK_VERSION, &["quality".into()])
        .await
        .unwrap();
    assert_eq!(
        dataset_labels(
            pai.get_dataset_version(SDK_DATASET, SDK_VERSION)
                .await
                .unwrap()
        ),
        BTreeMap::new(),
        "{who}"
    );
}

#[tokio::test]
async fn pai_calls_work_with_access_key_sts_token_and_bearer() {
    let credentials = [
        ("access key", access_key()),
        (
            "STS token",
            Credentials::AccessKey {
                id: "STS.demoTemporaryKey".into(),
                secret: "demoTemporarySecret".into(),
                security_token: Some("demoSecurityToken".into()),
            },
        ),
        ("bearer", Credentials::Bearer("sk-demo".into())),
    ];
    for (who, creds) in credentials {
        let (handle, clouds) = sim().await;
        let pai = clouds.pai("cn-shanghai", source(creds)).unwrap();
        pai_scenario(&pai, &handle, who).await;
        let counts = handle.counters();
        assert!(
            counts.api("AddImageLabels").ok >= 1
                && counts.api("DeleteDatasetVersionLabels").ok == 1,
            "{who}: {counts:?}"
        );
        // The budgets' main-account lookup (STS GetCallerIdentity, once per
        // credential) is not a PAI call: a simulator without that API
        // refuses it and the client counts the key as its own account.
        assert_eq!(
            counts
                .apis
                .iter()
                .filter(|(api, _)| !matches!(
                    api.as_str(),
                    "AssumeRoleWithOIDC" | "GetCallerIdentity"
                ))
                .map(|(_, a)| a.error)
                .sum::<u64>(),
            0,
            "{who}: no call was rejected: {counts:?}"
        );
    }
}

#[tokio::test]
async fn pai_calls_work_with_rrsa_credentials_from_sts() {
    let (handle, clouds) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let seed = imagelabel::sim::SeedConfig::demo();
    let oidc = seed
        .credentials
        .oidc
        .expect("demo seed has an OIDC section");
    std::fs::write(&token_file, &oidc.token).unwrap();
    let env: BTreeMap<&str, String> = [
        ("ALIBABA_CLOUD_ROLE_ARN", oidc.role_arn.clone()),
        ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", oidc.provider_arn.clone()),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ]
    .into();
    let creds = clouds
        .default_credentials_with_env(imagelabel::api::Provider::Pai, &|k| env.get(k).cloned())
        .unwrap();
    match creds.get().await.unwrap() {
        Credentials::AccessKey { security_token, .. } => {
            assert!(security_token.is_some(), "RRSA yields a temporary key")
        }
        other => panic!("unexpected {other:?}"),
    }
    let pai = clouds.pai("cn-shanghai", creds).unwrap();
    pai_scenario(&pai, &handle, "RRSA").await;
    assert_eq!(
        handle.counters().api("AssumeRoleWithOIDC").ok,
        1,
        "STS called once, then cached"
    );

    // A wrong token is refused at STS, with a clear error.
    std::fs::write(&token_file, "not-the-token").unwrap();
    let fresh = Clouds::new(CloudConfig::with_base_url(&handle.base_url())).unwrap();
    let creds = fresh
        .default_credentials_with_env(imagelabel::api::Provider::Pai, &|k| env.get(k).cloned())
        .unwrap();
    assert!(creds.get().await.is_err());
}

#[tokio::test]
async fn wrong_pai_secret_gets_the_signature_error() {
    let (_handle, clouds) = sim().await;
    let pai = clouds
        .pai(
            "cn-shanghai",
            source(Credentials::AccessKey {
                id: "testAK".into(),
                secret: "nope".into(),
                security_token: None,
            }),
        )
        .unwrap();
    let err = pai
        .add_image_labels(IMAGE, &pairs(&[("system.a", "1")]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthenticated);
    assert_eq!(err.code, "SignatureDoesNotMatch");
    assert!(err.request_id.is_some());
    assert!(
        !err.to_string().contains("nope"),
        "the secret never appears in errors"
    );
}

#[tokio::test]
async fn label_provider_path_for_every_pai_target_and_not_found() {
    let (handle, clouds) = sim().await;
    let p = clouds
        .provider(
            imagelabel::api::Provider::Pai,
            "cn-shanghai",
            source(access_key()),
        )
        .unwrap();
    let targets = [
        Target::PaiImage {
            image_id: IMAGE.into(),
            workspace_id: Some("12345".into()),
        },
        Target::PaiDataset {
            dataset_id: DATASET.into(),
        },
        Target::PaiDatasetVersion {
            dataset_id: DATASET.into(),
            version: "v2".into(),
        },
    ];
    for t in &targets {
        p.add(t, &pairs(&[("system.dsw.tag", "v 1")]))
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(
            p.observe(t)
                .await
                .unwrap()
                .get("system.dsw.tag")
                .map(String::as_str),
            Some("v 1"),
            "{t}"
        );
        p.remove(t, &["system.dsw.tag".into()]).await.unwrap();
        assert!(!p.observe(t).await.unwrap().contains_key("system.dsw.tag"));
        assert_eq!(
            handle.labels_of(t),
            Some(p.observe(t).await.unwrap()),
            "{t}: observe equals the simulator"
        );
    }
    let missing = p
        .observe(&Target::PaiImage {
            image_id: "image-missing".into(),
            workspace_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
}

async fn ims_scenario(ims: &ImsClient, who: &str) {
    ims.add_image_tag(PROJECT, IMS_IMAGE, "stage", "beta")
        .await
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    ims.batch_add_or_delete_tags(
        PROJECT,
        IMS_IMAGE,
        TagAction::Create,
        &pairs(&[("key1", "value1"), ("key3", "")]),
    )
    .await
    .unwrap();
    let tags: BTreeMap<String, String> = ims
        .list_image_tags(PROJECT, IMS_IMAGE)
        .await
        .unwrap()
        .tags
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    assert_eq!(tags.get("stage").map(String::as_str), Some("beta"), "{who}");
    assert_eq!(
        tags.get("key3").map(String::as_str),
        Some(""),
        "{who}: empty value kept"
    );
    ims.batch_add_or_delete_tags(
        PROJECT,
        IMS_IMAGE,
        TagAction::Delete,
        &pairs(&[("key1", "value1"), ("missing", "")]),
    )
    .await
    .unwrap();
    let tags = ims.list_image_tags(PROJECT, IMS_IMAGE).await.unwrap().tags;
    assert!(!tags.iter().any(|t| t.key == "key1"), "{who}: deleted");
}

#[tokio::test]
async fn ims_calls_work_with_ak_sk_and_temporary_keys_and_a_wrong_sk_is_refused() {
    for (who, creds) in [
        (
            "AK/SK",
            Credentials::AkSk {
                ak: "hwAK".into(),
                sk: "hwSK".into(),
                security_token: None,
            },
        ),
        (
            "temporary AK/SK",
            Credentials::AkSk {
                ak: "hwSTSAK".into(),
                sk: "hwSTSSK".into(),
                security_token: Some("hwSecurityToken".into()),
            },
        ),
    ] {
        let (handle, clouds) = sim().await;
        let ims = clouds.ims("cn-north-4", source(creds)).unwrap();
        ims_scenario(&ims, who).await;
        let counts = handle.counters();
        assert_eq!(
            (
                counts.api("AddImageTag").ok,
                counts.api("BatchAddOrDeleteTags").ok,
                counts.writes
            ),
            (1, 2, 3),
            "{who}: {counts:?}"
        );
        assert_eq!(
            counts.apis.values().map(|a| a.error).sum::<u64>(),
            0,
            "{who}: no call was rejected: {counts:?}"
        );
    }
    let (handle, clouds) = sim().await;
    let ims = clouds
        .ims(
            "cn-north-4",
            source(Credentials::AkSk {
                ak: "hwAK".into(),
                sk: "wrong".into(),
                security_token: None,
            }),
        )
        .unwrap();
    let err = ims.list_image_tags(PROJECT, IMS_IMAGE).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthenticated);
    assert_eq!(err.http_status, Some(401));
    assert_eq!(err.code, "APIGW.0301");

    // One engine pass that adds and removes: exactly one BatchAddOrDeleteTags
    // `create` (all adds) and one `delete` (all removes), nothing else.
    let p = clouds
        .provider(
            imagelabel::api::Provider::HuaweicloudIms,
            "cn-north-4",
            source(Credentials::AkSk {
                ak: "hwAK".into(),
                sk: "hwSK".into(),
                security_token: None,
            }),
        )
        .unwrap();
    let t = Target::ImsImage {
        project_id: PROJECT.into(),
        image_id: IMS_IMAGE.into(),
    };
    let plan = Plan {
        add: labels_map(&[("a", "1"), ("b", "2"), ("c", "")]),
        remove: ["owner".to_string()].into(),
        ..Default::default()
    };
    handle.reset_counters();
    let applied = engine::execute(p.as_ref(), &t, &plan, engine::Order::AddsFirst).await;
    assert!(applied.is_complete(), "{:?}", applied.error);
    assert_eq!(applied.calls, 2);
    let counts = handle.counters();
    // Two batch calls carried three adds and one remove, so one was the
    // `create` and the other the `delete`.
    assert_eq!(
        (
            counts.api("BatchAddOrDeleteTags").ok,
            counts.api("AddImageTag").total(),
            counts.api("DeleteImageTag").total(),
            counts.writes,
        ),
        (2, 0, 0, 2),
        "{counts:?}"
    );
    assert_eq!(
        p.observe(&t).await.unwrap(),
        labels_map(&[("a", "1"), ("b", "2"), ("c", ""), ("env", "prod")])
    );
    assert_eq!(handle.labels_of(&t), Some(p.observe(&t).await.unwrap()));
    assert_eq!(p.limits(&t).max_labels_on_object, Some(10));
}
