//! Turning what was read into manifest files: which labels a set may
//! declare, its Kubernetes name, its file, and the YAML. Pure and ordered,
//! so exporting the same cloud twice gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::ObjectMeta;

use super::{Found, Object};
use crate::api::rules::{IMS_RULES, LabelRules, PAI_DATASET_RULES, PAI_IMAGE_RULES};
use crate::api::{
    DatasetLabelSet, DatasetLabelSetSpec, ImageLabelSet, ImageLabelSetSpec, LabelSet, Mode,
    Provider,
};
use crate::engine::reserved_patterns;
use crate::plan::{KeyMatcher, Labels};

/// How the exported sets are written.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub namespace: String,
    pub mode: Mode,
    pub adopt: bool,
}

/// One output file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// File name (no directory).
    pub name: String,
    pub text: String,
    pub sets: usize,
}

/// The longest name a custom resource may have (a DNS-1123 subdomain).
const MAX_NAME: usize = 253;

/// A valid Kubernetes object name from cloud names and IDs: lower-case
/// letters and digits, runs of anything else as one `-`, no `-` at either end.
fn k8s_name(parts: &[&str]) -> String {
    let mut out = String::new();
    for c in parts.join("-").chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.truncate(MAX_NAME);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "object".into() } else { out }
}

fn provider_of(o: &Object) -> Provider {
    match o {
        Object::ImsImage { .. } => Provider::HuaweicloudIms,
        _ => Provider::Pai,
    }
}

fn rules_of(o: &Object) -> &'static LabelRules {
    match o {
        Object::PaiImage { .. } => &PAI_IMAGE_RULES,
        Object::PaiDataset { .. } | Object::PaiDatasetVersion { .. } => &PAI_DATASET_RULES,
        Object::ImsImage { .. } => &IMS_RULES,
    }
}

/// The labels a set may declare: not reserved by the provider, and within
/// the rules the operator enforces (a PAI image key off the AddImageLabels
/// list, such as the cloud's own `system.official`, could never be
/// written, so a set must not claim it).
fn manageable(found: &Found) -> Labels {
    let provider = provider_of(&found.object);
    let reserved = KeyMatcher::new(reserved_patterns(provider).iter().copied())
        .expect("the reserved patterns are valid globs");
    let extra = crate::api::rules::extra_pai_image_keys();
    let rules = rules_of(&found.object);
    found
        .labels
        .iter()
        .filter(|(k, v)| !reserved.matches(k) && rules.check(k, v, &extra).is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// File of an object: one per PAI workspace and one per IMS project.
fn file_of(f: &Found) -> String {
    match &f.object {
        Object::PaiImage { workspace_id, .. }
        | Object::PaiDataset { workspace_id, .. }
        | Object::PaiDatasetVersion { workspace_id, .. } => {
            format!(
                "{}.yaml",
                k8s_name(&["pai", &f.region, "workspace", workspace_id])
            )
        }
        Object::ImsImage { project_id, .. } => {
            format!(
                "{}.yaml",
                k8s_name(&["ims", &f.region, "project", project_id])
            )
        }
    }
}

/// Order within a file: images by ID, then each dataset followed by its versions.
fn order_key(o: &Object) -> (u8, &str, Option<&str>) {
    match o {
        Object::PaiImage { image_id, .. } | Object::ImsImage { image_id, .. } => {
            (0, image_id, None)
        }
        Object::PaiDataset { dataset_id, .. } => (1, dataset_id, None),
        Object::PaiDatasetVersion {
            dataset_id,
            version,
            ..
        } => (1, dataset_id, Some(version)),
    }
}

fn base_name(f: &Found) -> String {
    let name = f.name.as_str();
    match &f.object {
        Object::PaiImage { image_id, .. } => k8s_name(&[name, image_id]),
        Object::PaiDataset { dataset_id, .. } => k8s_name(&[name, dataset_id]),
        Object::PaiDatasetVersion {
            dataset_id,
            version,
            ..
        } => k8s_name(&[name, dataset_id, version]),
        Object::ImsImage { image_id, .. } => k8s_name(&["ims", name, image_id]),
    }
}

/// A name not taken yet by this kind: the base name, or with `-2`, `-3`, …
fn unique(base: String, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        let suffix = format!("-{n}");
        let mut stem = base.clone();
        stem.truncate(MAX_NAME - suffix.len());
        name = format!("{}{suffix}", stem.trim_end_matches('-'));
        n += 1;
    }
    name
}

fn meta(name: String, opts: &ExportOptions) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(opts.namespace.clone()),
        ..Default::default()
    }
}

fn document(f: &Found, labels: Labels, name: String, opts: &ExportOptions) -> String {
    let region = Some(f.region.clone());
    let metadata = meta(name, opts);
    let image = |provider, image_id: &String, workspace_id, project_id| {
        serde_saphyr::to_string(&ImageLabelSet {
            metadata: metadata.clone(),
            spec: ImageLabelSetSpec {
                provider,
                image_id: image_id.clone(),
                region: region.clone(),
                workspace_id,
                project_id,
                labels: labels.clone(),
                mode: opts.mode,
                adopt: opts.adopt,
                ..Default::default()
            },
            status: None,
        })
    };
    let dataset = |workspace_id: &String, dataset_id: &String, version: Option<&String>| {
        serde_saphyr::to_string(&DatasetLabelSet {
            metadata: metadata.clone(),
            spec: DatasetLabelSetSpec {
                dataset_id: dataset_id.clone(),
                version: version.cloned(),
                region: region.clone(),
                workspace_id: Some(workspace_id.clone()),
                labels: labels.clone(),
                mode: opts.mode,
                adopt: opts.adopt,
                ..Default::default()
            },
            status: None,
        })
    };
    let yaml = match &f.object {
        Object::PaiImage {
            workspace_id,
            image_id,
        } => image(Provider::Pai, image_id, Some(workspace_id.clone()), None),
        Object::ImsImage {
            project_id,
            image_id,
        } => image(
            Provider::HuaweicloudIms,
            image_id,
            None,
            Some(project_id.clone()),
        ),
        Object::PaiDataset {
            workspace_id,
            dataset_id,
        } => dataset(workspace_id, dataset_id, None),
        Object::PaiDatasetVersion {
            workspace_id,
            dataset_id,
            version,
        } => dataset(workspace_id, dataset_id, Some(version)),
    };
    yaml.expect("a label set serializes to YAML")
}

fn header(file: &str, sets: usize, skipped: usize) -> String {
    format!(
        "# {file}: {sets} set(s) exported by `imagelabel export` from the labels the cloud holds;\n\
         # {skipped} object(s) without labels a set could manage are left out.\n\
         # Review before applying: each set declares exactly what its object holds now.\n"
    )
}

/// The manifest files for `found`, sorted by name; objects without a label
/// a set could manage are left out (counted in each file's header).
pub fn render(found: &[Found], opts: &ExportOptions) -> Vec<File> {
    let mut groups: BTreeMap<String, Vec<&Found>> = BTreeMap::new();
    for f in found {
        groups.entry(file_of(f)).or_default().push(f);
    }
    let mut taken: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    for (file, mut members) in groups {
        members.sort_by(|a, b| order_key(&a.object).cmp(&order_key(&b.object)));
        let mut docs = Vec::new();
        let mut skipped = 0;
        for f in members {
            let labels = manageable(f);
            if labels.is_empty() {
                skipped += 1;
                continue;
            }
            let kind = match f.object {
                Object::PaiDataset { .. } | Object::PaiDatasetVersion { .. } => {
                    DatasetLabelSet::KIND
                }
                _ => ImageLabelSet::KIND,
            };
            let name = unique(base_name(f), taken.entry(kind).or_default());
            docs.push(document(f, labels, name, opts));
        }
        let text = format!(
            "{}---\n{}",
            header(&file, docs.len(), skipped),
            docs.join("---\n")
        );
        files.push(File {
            name: file,
            text,
            sets: docs.len(),
        });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(ws: &str, id: &str, name: &str, labels: &[(&str, &str)]) -> Found {
        Found {
            object: Object::PaiImage {
                workspace_id: ws.into(),
                image_id: id.into(),
            },
            name: name.into(),
            region: "cn-shanghai".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn opts() -> ExportOptions {
        ExportOptions {
            namespace: "ml".into(),
            mode: Mode::Observe,
            adopt: true,
        }
    }

    #[test]
    fn names_are_valid_kubernetes_names() {
        assert_eq!(
            k8s_name(&["XGBoost GPU_1.6", "image-4c62"]),
            "xgboost-gpu-1-6-image-4c62"
        );
        assert_eq!(k8s_name(&["", "--Ä--"]), "object");
        let long = "a".repeat(400);
        assert_eq!(k8s_name(&[&long]).len(), MAX_NAME);
        let mut taken = BTreeSet::new();
        assert_eq!(unique("x".into(), &mut taken), "x");
        assert_eq!(unique("x".into(), &mut taken), "x-2");
        assert_eq!(unique("x".into(), &mut taken), "x-3");
    }

    #[test]
    fn only_manageable_labels_are_declared() {
        let f = image(
            "1",
            "image-a",
            "a",
            &[
                ("system.chipType", "GPU"),
                ("system.official", "true"),
                ("acs:owner", "x"),
                ("team", "ml"),
            ],
        );
        assert_eq!(
            manageable(&f).into_keys().collect::<Vec<_>>(),
            ["system.chipType"]
        );
    }

    #[test]
    fn files_group_by_workspace_in_a_stable_order() {
        let found = vec![
            image("2", "image-b", "same", &[("system.chipType", "GPU")]),
            image("1", "image-z", "same", &[("system.chipType", "CPU")]),
            image("1", "image-a", "same", &[("system.framework", "x")]),
            image("1", "image-empty", "e", &[("system.official", "true")]),
        ];
        let files = render(&found, &opts());
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pai-cn-shanghai-workspace-1.yaml",
                "pai-cn-shanghai-workspace-2.yaml"
            ]
        );
        let one = &files[0].text;
        assert_eq!(files[0].sets, 2);
        assert!(one.contains("1 object(s) without labels"), "{one}");
        let a = one.find("name: same-image-a").expect(one);
        let z = one.find("name: same-image-z").expect(one);
        assert!(a < z, "sorted by image ID");
        assert!(
            one.contains("adopt: true") && one.contains("mode: Observe"),
            "{one}"
        );
        let mut reversed = found.clone();
        reversed.reverse();
        assert_eq!(
            render(&reversed, &opts()),
            files,
            "input order does not matter"
        );
    }
}
