//! Validation in the controller and the CLI. The CRD schema enforces the same
//! rules at admission, but it can be bypassed (CLI manifests never see an API
//! server) or stale (an older CRD), so nothing reaches a cloud unchecked.

use std::collections::BTreeMap;

use super::ids::IdKind;
use super::label_set::LabelSetSpec;
use super::spec::{DatasetLabelSetSpec, ImageLabelSetSpec, Policy, Provider};

/// One problem, with the field it concerns and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub use super::rules::{IMS_RULES, LabelRules, PAI_DATASET_RULES, PAI_IMAGE_RULES};

pub fn rules_for_image(provider: Provider) -> LabelRules {
    match provider {
        Provider::Pai => PAI_IMAGE_RULES,
        Provider::HuaweicloudIms => IMS_RULES,
    }
}

fn err(errors: &mut Vec<FieldError>, field: impl Into<String>, message: impl Into<String>) {
    errors.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

/// Checks one label map against a provider's rules (the PAI image key list
/// includes this process's `--extra-pai-image-keys`).
pub fn validate_labels(
    labels: &BTreeMap<String, String>,
    rules: &LabelRules,
    provider: Provider,
    errors: &mut Vec<FieldError>,
) {
    if labels.len() > rules.max_labels {
        err(
            errors,
            "spec.labels",
            format!(
                "{} labels declared; {provider} allows at most {} — split the labels or drop some",
                labels.len(),
                rules.max_labels
            ),
        );
    }
    let extra_keys = super::rules::extra_pai_image_keys();
    for (key, value) in labels {
        for violation in rules.check(key, value, &extra_keys) {
            // An empty key cannot be named as a field of its own.
            let field = if key.is_empty() {
                "spec.labels".to_string()
            } else {
                format!("spec.labels[{key:?}]")
            };
            err(errors, field, format!("{provider}: {violation}"));
        }
    }
}

fn validate_policy(policy: &Policy, errors: &mut Vec<FieldError>) {
    if let Some(interval) = &policy.resync_interval {
        match parse_duration(interval) {
            Some(d) if d >= std::time::Duration::from_secs(10) => {}
            Some(_) => err(
                errors,
                "spec.resyncInterval",
                format!("{interval:?} is shorter than the minimum of 10s"),
            ),
            None => err(
                errors,
                "spec.resyncInterval",
                format!("{interval:?} is not a duration like 30s, 10m or 1h30m"),
            ),
        }
    }
    if policy.ignore_keys.len() > 32 {
        err(errors, "spec.ignoreKeys", "at most 32 patterns");
    }
    for (i, pattern) in policy.ignore_keys.iter().enumerate() {
        if let Err(e) = globset::Glob::new(pattern) {
            err(
                errors,
                format!("spec.ignoreKeys[{i}]"),
                format!("{pattern:?} is not a valid glob: {e}"),
            );
        }
    }
    if let Some(secret) = &policy.credentials_ref {
        if secret.name.is_empty() {
            err(
                errors,
                "spec.credentialsRef.name",
                "must name a Secret in the same namespace",
            );
        } else {
            require_id(
                &secret.name,
                IdKind::SecretName,
                "spec.credentialsRef.name",
                errors,
            );
        }
    }
}

fn require_id(value: &str, kind: IdKind, field: &str, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        err(errors, field, "is required");
    } else if !kind.matches(value) {
        // Debug-quoted and cut short: the value may be hostile or huge.
        let shown: String = format!("{value:?}").chars().take(80).collect();
        err(errors, field, format!("{shown} is not {}", kind.shape()));
    }
}

pub fn validate_image_spec(spec: &ImageLabelSetSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let image_kind = match spec.provider {
        Provider::Pai => IdKind::PaiImage,
        Provider::HuaweicloudIms => IdKind::ImsImage,
    };
    require_id(&spec.image_id, image_kind, "spec.imageId", &mut errors);
    if let Some(w) = &spec.workspace_id {
        require_id(w, IdKind::PaiWorkspace, "spec.workspaceId", &mut errors);
    }
    match spec.provider {
        Provider::Pai => {
            if spec.project_id.is_some() {
                err(
                    &mut errors,
                    "spec.projectId",
                    "only valid with provider huaweicloud-ims; remove it",
                );
            }
        }
        Provider::HuaweicloudIms => {
            match &spec.project_id {
                None => err(
                    &mut errors,
                    "spec.projectId",
                    "is required when spec.provider is huaweicloud-ims",
                ),
                Some(p) => require_id(p, IdKind::ImsProject, "spec.projectId", &mut errors),
            }
            if spec.workspace_id.is_some() {
                err(
                    &mut errors,
                    "spec.workspaceId",
                    "only valid with provider pai; remove it",
                );
            }
        }
    }
    validate_labels(
        &spec.labels,
        &rules_for_image(spec.provider),
        spec.provider,
        &mut errors,
    );
    validate_policy(&spec.policy(), &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub fn validate_dataset_spec(spec: &DatasetLabelSetSpec) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    require_id(
        &spec.dataset_id,
        IdKind::PaiDataset,
        "spec.datasetId",
        &mut errors,
    );
    if let Some(w) = &spec.workspace_id {
        require_id(w, IdKind::PaiWorkspace, "spec.workspaceId", &mut errors);
    }
    if spec.provider != Provider::Pai {
        err(
            &mut errors,
            "spec.provider",
            "DatasetLabelSet supports only provider pai",
        );
    }
    if let Some(v) = &spec.version {
        if v.trim().is_empty() {
            err(
                &mut errors,
                "spec.version",
                "must not be empty; omit it to label the dataset itself",
            );
        } else {
            require_id(v, IdKind::PaiDatasetVersion, "spec.version", &mut errors);
        }
    }
    validate_labels(&spec.labels, &PAI_DATASET_RULES, spec.provider, &mut errors);
    validate_policy(&spec.policy(), &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Parses `1h30m`, `10m`, `45s`, `500ms`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = std::time::Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (std::time::Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (std::time::Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (std::time::Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (std::time::Duration::from_secs(3600), 1)
        } else {
            return None;
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(labels: &[(&str, &str)]) -> ImageLabelSetSpec {
        ImageLabelSetSpec {
            image_id: "image-abc".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_good_pai_spec() {
        assert_eq!(
            validate_image_spec(&image(&[("system.chipType", "GPU")])),
            Ok(())
        );
    }

    #[test]
    fn names_the_field_of_a_non_system_key() {
        let errs = validate_image_spec(&image(&[("team", "ml")])).unwrap_err();
        assert_eq!(errs[0].field, "spec.labels[\"team\"]");
        assert!(errs[0].message.contains("system."), "{}", errs[0].message);
    }

    #[test]
    fn rejects_101_labels_and_empty_key_and_missing_image() {
        let many: Vec<(String, String)> = (0..101)
            .map(|i| (format!("system.k{i}"), "v".to_string()))
            .collect();
        let mut spec = image(&[]);
        spec.labels = many.into_iter().collect();
        let errs = validate_image_spec(&spec).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.labels" && e.message.contains("at most 100"))
        );

        let errs = validate_image_spec(&image(&[("", "x")])).unwrap_err();
        assert!(errs.iter().any(|e| e.message.contains("empty")));

        let mut spec = image(&[]);
        spec.image_id = String::new();
        let errs = validate_image_spec(&spec).unwrap_err();
        assert_eq!(errs[0].field, "spec.imageId");
    }

    #[test]
    fn ims_needs_project_and_short_keys() {
        let mut spec = image(&[("a-very-long-key-that-goes-past-36-chars", "v")]);
        spec.provider = Provider::HuaweicloudIms;
        let errs = validate_image_spec(&spec).unwrap_err();
        assert!(errs.iter().any(|e| e.field == "spec.projectId"));
        assert!(errs.iter().any(|e| e.message.contains("at most 36")));
    }

    fn ims(labels: &[(&str, &str)]) -> ImageLabelSetSpec {
        ImageLabelSetSpec {
            provider: Provider::HuaweicloudIms,
            project_id: Some("fd73a4a14a4a4dfb9771a8475e5198ea".into()),
            image_id: "67e17426-359e-49fb-aa12-0bd1756ec240".into(),
            ..image(labels)
        }
    }

    /// The errors of an IMS spec that must fail, as (field, message) pairs.
    fn ims_errors(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        validate_image_spec(&ims(labels))
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn accepts_ims_tags_at_the_limits() {
        let key36 = "k".repeat(36);
        let value43 = "v".repeat(43);
        let mut tags: Vec<(String, String)> = (0..9)
            .map(|i| (format!("k{i}"), "team ml_1.0:a+b-c@e".to_string()))
            .collect();
        tags.push((key36, value43));
        let mut spec = ims(&[]);
        spec.labels = tags.into_iter().collect();
        assert_eq!(validate_image_spec(&spec), Ok(()));
        assert_eq!(
            validate_image_spec(&ims(&[("path", "a/b"), ("empty", "")])),
            Ok(()),
            "values may hold `/` and be empty"
        );
    }

    #[test]
    fn ims_rejects_a_value_past_43_characters() {
        let value44 = "v".repeat(44);
        let errs = ims_errors(&[("note", &value44)]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "spec.labels[\"note\"]");
        assert!(errs[0].1.contains("44 characters") && errs[0].1.contains("at most 43"));
    }

    #[test]
    fn ims_rejects_11_declared_tags() {
        let mut spec = ims(&[]);
        spec.labels = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
        let errs = validate_image_spec(&spec).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.labels");
        assert!(
            errs[0].message.contains("11 labels") && errs[0].message.contains("at most 10"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn ims_rejects_the_reserved_sys_prefix() {
        let errs = ims_errors(&[("_sys_enterprise_project_id", "0")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, "spec.labels[\"_sys_enterprise_project_id\"]");
        assert!(errs[0].1.contains("reserved"), "{}", errs[0].1);
    }

    #[test]
    fn ims_rejects_keys_and_values_outside_the_charset() {
        for key in ["team/ml", "a,b", "key*", "tab\there"] {
            let errs = ims_errors(&[(key, "v")]);
            assert!(
                errs.iter()
                    .any(|(f, m)| *f == format!("spec.labels[{key:?}]")
                        && m.contains("key has characters")),
                "{key:?}: {errs:?}"
            );
        }
        let errs = ims_errors(&[("k", "a,b")]);
        assert!(
            errs.iter()
                .any(|(f, m)| f == "spec.labels[\"k\"]" && m.contains("value has characters")),
            "{errs:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("1h30m"),
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("500ms"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn refuses_hostile_ids_naming_the_field() {
        let version = |v: &str| DatasetLabelSetSpec {
            dataset_id: "d-ml6k2q9h3v7x".into(),
            version: Some(v.into()),
            ..Default::default()
        };
        for bad in ["..", ".", "v1/..", "v1%2f", "v1?x"] {
            let errs = validate_dataset_spec(&version(bad)).unwrap_err();
            assert_eq!(errs[0].field, "spec.version", "{bad:?}");
        }
        assert_eq!(validate_dataset_spec(&version("v12")), Ok(()));
        let mut spec = image(&[("system.chipType", "GPU")]);
        spec.credentials_ref = Some(crate::api::SecretRef {
            name: "../other".into(),
        });
        spec.workspace_id = Some("..".into());
        let fields: Vec<String> = validate_image_spec(&spec)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert!(
            fields.contains(&"spec.credentialsRef.name".to_string()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"spec.workspaceId".to_string()),
            "{fields:?}"
        );
        let huge = "image-".to_string() + &"a".repeat(10_000);
        let errs = validate_image_spec(&image(&[]).clone_with_id(&huge)).unwrap_err();
        assert!(
            errs[0].message.len() < 300,
            "the message echoes a bounded prefix"
        );
    }

    impl ImageLabelSetSpec {
        fn clone_with_id(&self, id: &str) -> Self {
            ImageLabelSetSpec {
                image_id: id.into(),
                ..self.clone()
            }
        }
    }
}
