use super::*;

#[test]
fn demo_seed_parses_and_has_what_the_demo_needs() {
    let seed = SeedConfig::demo();
    assert!(
        seed.credentials
            .pai
            .iter()
            .any(|c| c.access_key_id == "testAK" && c.access_key_secret == "testSecret")
    );
    assert!(
        seed.credentials
            .bearer_tokens
            .contains(&"sk-demo".to_string())
    );
    assert!(
        seed.credentials
            .ims
            .iter()
            .any(|c| c.ak == "hwAK" && c.sk == "hwSK")
    );
    assert!(
        seed.pai
            .images
            .iter()
            .any(|i| i.labels.keys().any(|k| k.starts_with("system.dsw.")))
    );
    assert!(
        seed.pai
            .images
            .iter()
            .any(|i| i.labels.get("system.official").map(String::as_str) == Some("true"))
    );
    assert_eq!(seed.pai.datasets.len(), 2);
    assert!(seed.pai.datasets.iter().any(|d| !d.versions.is_empty()));
    assert_eq!(seed.ims.images.len(), 1);
    assert!(seed.ims.images[0].tags.len() >= 2);
}

#[test]
fn unquoted_scalars_become_strings_and_defaults_apply() {
    let seed = SeedConfig::from_yaml(
        "pai:\n  images:\n    - {id: image-a, labels: {system.official: true, system.n: 3}}\n",
    )
    .unwrap();
    assert_eq!(seed.flow_control, FlowControlSeed::published());
    assert_eq!(seed.credentials.pai_main_account(), DEFAULT_MAIN_ACCOUNT_ID);
    assert_eq!(seed.pai.images[0].labels["system.official"], "true");
    assert_eq!(seed.pai.images[0].labels["system.n"], "3");
}

#[test]
fn rejects_duplicates_bad_rates_and_unknown_fields() {
    assert!(
        SeedConfig::from_yaml("pai:\n  images: [{id: a}, {id: a}]\n")
            .unwrap_err()
            .0
            .contains("twice")
    );
    assert!(
        SeedConfig::from_yaml("faults: {dropRate: 1.5}\n")
            .unwrap_err()
            .0
            .contains("dropRate")
    );
    assert!(SeedConfig::from_yaml("qps: 3\n").is_err());
    assert!(SeedConfig::from_yaml("flowControl: {enabled: true, rate: {}}\n").is_err());
    assert!(
        SeedConfig::from_yaml("flowControl: {rates: {AddImageLabel: 5}}\n")
            .unwrap_err()
            .0
            .contains("AddImageLabel")
    );
    assert!(SeedConfig::from_yaml("credentials: {mainAccountId: acct}\n").is_err());
    assert!(
        SeedConfig::from_yaml(
            "credentials:\n  pai: [{accessKeyId: a, accessKeySecret: b, accountId: ''}]\n"
        )
        .is_err()
    );
    let seed = SeedConfig::from_yaml(
        "flowControl: {enabled: false, rates: {AddImageLabels: 5, ListImageTags: 0}}\n",
    )
    .unwrap();
    assert!(!seed.flow_control.enabled);
    assert_eq!(seed.flow_control.rates["AddImageLabels"], 5);
    assert!(
        SeedConfig::from_yaml("credentials:\n  pai: [{accessKeyId: a, accessKeySecret: ''}]\n")
            .is_err()
    );
}
