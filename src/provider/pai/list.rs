//! The AIWorkSpace list calls `imagelabel export` reads the cloud with: one
//! page a call, through the same signing, retries and budget as every other
//! call of this client.

use reqwest::Method;
use serde_json::Value;

use super::{Call, PaiClient, dataset_path, parse_labels, to_map};
use crate::provider::CloudError;
pub use crate::provider::{Listed, Page};

/// The largest page asked for. The API reference gives only defaults
/// (ListImages 20, ListDatasets and ListDatasetVersions 10); 100 is the
/// largest page the simulator serves, see docs/cloud-rules.md.
pub const PAGE_SIZE: u32 = 100;

/// ListImages filters (all optional, as in the API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageFilter {
    pub workspace_id: Option<String>,
    /// Fuzzy match on the name.
    pub name: Option<String>,
    /// `key=value,…`, keys from the AddImageLabels list.
    pub labels: Option<String>,
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn page_of(body: &Value, list: &str, id_field: &str) -> Page {
    let items = body
        .get(list)
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| {
            Some(Listed {
                id: text(v, id_field)?,
                name: text(v, "Name").unwrap_or_default(),
                workspace_id: text(v, "WorkspaceId"),
                labels: to_map(parse_labels(v.get("Labels"))),
            })
        })
        .collect();
    Page {
        items,
        total_count: body.get("TotalCount").and_then(Value::as_u64),
    }
}

fn paged(call: Call, page_number: u32, page_size: u32) -> Call {
    call.query("PageNumber", page_number.to_string())
        .query("PageSize", page_size.to_string())
}

impl PaiClient {
    /// ListImages with `Verbose=true`, so each image carries its labels.
    pub async fn list_images_page(
        &self,
        filter: &ImageFilter,
        page_number: u32,
        page_size: u32,
    ) -> Result<Page, CloudError> {
        let mut call =
            Call::new("ListImages", Method::GET, "/api/v1/images".into()).query("Verbose", "true");
        for (k, v) in [
            ("WorkspaceId", &filter.workspace_id),
            ("Name", &filter.name),
            ("Labels", &filter.labels),
        ] {
            if let Some(v) = v {
                call = call.query(k, v.clone());
            }
        }
        let a = self.call(paged(call, page_number, page_size)).await?;
        Ok(page_of(&a.body, "Images", "ImageId"))
    }

    /// ListDatasets: each dataset carries its labels.
    pub async fn list_datasets_page(
        &self,
        workspace_id: Option<&str>,
        page_number: u32,
        page_size: u32,
    ) -> Result<Page, CloudError> {
        let mut call = Call::new("ListDatasets", Method::GET, "/api/v1/datasets".into());
        if let Some(w) = workspace_id {
            call = call.query("WorkspaceId", w);
        }
        let a = self.call(paged(call, page_number, page_size)).await?;
        Ok(page_of(&a.body, "Datasets", "DatasetId"))
    }

    /// ListDatasetVersions: each version (by name) carries its labels.
    pub async fn list_dataset_versions_page(
        &self,
        dataset_id: &str,
        page_number: u32,
        page_size: u32,
    ) -> Result<Page, CloudError> {
        let call = Call::new(
            "ListDatasetVersions",
            Method::GET,
            format!("{}/versions", dataset_path(dataset_id)),
        );
        let a = self.call(paged(call, page_number, page_size)).await?;
        Ok(page_of(&a.body, "DatasetVersions", "VersionName"))
    }
}

/// A batched drift check plans from a ListImages (ListDatasets) page entry;
/// a per-object one from a ListImageLabels (GetDataset) answer. Both must read the same labels, so
/// both feed the planner the same input and get the same plan.
#[cfg(test)]
mod proptests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::{page_of, parse_labels, to_map};
    use crate::api::{DeletionPolicy, Mode, Prune};
    use crate::plan::{Claim, KeyMatcher, Labels, Plan, PlanInput, Role, SetId, plan};

    const KEYS: &[&str] = &["team", "stage", "system.a", "system.b", "acs:x", "k 1"];

    /// A label value as the cloud may send it: a string, a number, a bool,
    /// null or absent; `None` in the key slot is an entry without a key.
    fn entry() -> impl Strategy<Value = (Option<&'static str>, Value)> {
        (
            prop_oneof![5 => proptest::sample::select(KEYS).prop_map(Some), 1 => Just(None)],
            prop_oneof![
                proptest::sample::select(&["1", "2", "", "v w"][..]).prop_map(|s| json!(s)),
                (0i64..3).prop_map(|n| json!(n)),
                any::<bool>().prop_map(|b| json!(b)),
                Just(Value::Null),
            ],
        )
    }

    fn labels_json(entries: &[(Option<&str>, Value)]) -> Value {
        Value::Array(
            entries
                .iter()
                .map(|(k, v)| match k {
                    Some(k) => json!({"Key": k, "Value": v}),
                    None => json!({"Value": v}),
                })
                .collect(),
        )
    }

    fn keys() -> impl Strategy<Value = BTreeSet<String>> {
        proptest::collection::btree_set(
            proptest::sample::select(KEYS).prop_map(String::from),
            0..KEYS.len(),
        )
    }

    fn labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map(
            proptest::sample::select(KEYS).prop_map(String::from),
            proptest::sample::select(&["1", "2", "true", ""][..]).prop_map(String::from),
            0..KEYS.len(),
        )
    }

    fn plan_from(
        observed: &Labels,
        desired: &Labels,
        owned: &BTreeSet<String>,
        claims: &[Claim],
        prune: Prune,
        mode: Mode,
    ) -> Plan {
        let me = SetId::new(100, "ns/me");
        let protected = KeyMatcher::new(["acs*"]).unwrap();
        plan(&PlanInput {
            set: &me,
            desired,
            observed,
            owned,
            prune,
            mode,
            deleting: None::<DeletionPolicy>,
            protected: &protected,
            claims,
            held: &BTreeSet::new(),
            adopt: false,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn a_list_entry_and_a_label_answer_plan_alike(
            // Distinct keys: the two answers may order labels differently.
            entries in proptest::collection::vec(entry(), 0..8)
                .prop_map(|v| {
                    let mut seen = BTreeSet::new();
                    v.into_iter()
                        .filter(|(k, _)| k.is_none_or(|k| seen.insert(k)))
                        .collect::<Vec<_>>()
                }),
            reversed in any::<bool>(),
            desired in labels(),
            owned in keys(),
            others in proptest::collection::vec((0i64..200, labels(), keys()), 0..3),
            prune in prop_oneof![Just(Prune::Owned), Just(Prune::All), Just(Prune::None)],
            mode in prop_oneof![Just(Mode::Sync), Just(Mode::Observe)],
        ) {
            let mut listed = entries.clone();
            if reversed {
                listed.reverse();
            }
            let list_body = json!({
                "Images": [
                    {"ImageId": "image-other", "Name": "o", "Labels": [{"Key": "team", "Value": "x"}]},
                    {"ImageId": "image-1", "Name": "n", "WorkspaceId": "ws", "Labels": labels_json(&listed)},
                ],
                "TotalCount": 2,
            });
            let labels_body = json!({"Labels": labels_json(&entries), "TotalCount": entries.len()});

            let page = page_of(&list_body, "Images", "ImageId");
            let from_list = page.items.iter().find(|i| i.id == "image-1").unwrap().labels.clone();
            // Exactly what `list_image_labels` and `observe_target` do with the answer.
            let from_labels = to_map(parse_labels(labels_body.get("Labels")));
            prop_assert_eq!(&from_list, &from_labels);
            // Datasets: a ListDatasets entry and a GetDataset answer.
            let datasets_body = json!({
                "Datasets": [{"DatasetId": "d-1", "Name": "n", "Labels": labels_json(&listed)}],
                "TotalCount": 1,
            });
            let get_body = json!({"DatasetId": "d-1", "Labels": labels_json(&entries)});
            let listed_dataset = page_of(&datasets_body, "Datasets", "DatasetId").items[0].labels.clone();
            prop_assert_eq!(&listed_dataset, &to_map(parse_labels(get_body.get("Labels"))));
            prop_assert_eq!(&listed_dataset, &from_labels);

            let claims: Vec<Claim> = others
                .into_iter()
                .enumerate()
                .map(|(i, (created, labels, owned))| Claim {
                    set: SetId::new(created, format!("ns/other{i}")),
                    labels,
                    owned,
                    role: Role::Sync,
                })
                .collect();
            prop_assert_eq!(
                plan_from(&from_list, &desired, &owned, &claims, prune, mode),
                plan_from(&from_labels, &desired, &owned, &claims, prune, mode)
            );
        }
    }
}
