//! Reading manifests from disk: files or directories, multi-document YAML,
//! both kinds. Every problem names the file, the document and the field.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde_json::Value;

use crate::api::validate::FieldError;
use crate::api::{DatasetLabelSet, ImageLabelSet, LabelSet};
use crate::engine::ResolvedSet;
use crate::plan::SetId;

/// One document read from disk, of either kind. Everything asked of it
/// goes to the kind's [`LabelSet`]; these methods only pick the kind.
#[derive(Clone, Debug)]
pub enum Manifest {
    Image(ImageLabelSet),
    Dataset(DatasetLabelSet),
}

/// `expr` with `$set` bound to the manifest's resource, whichever its kind.
macro_rules! with_set {
    ($manifest:expr, $set:ident => $expr:expr) => {
        match $manifest {
            Manifest::Image($set) => $expr,
            Manifest::Dataset($set) => $expr,
        }
    };
}

fn kind_of<K: LabelSet>(_: &K) -> &'static str {
    K::KIND
}

/// `namespace/name`, with `default` for a manifest without a namespace (as kubectl does).
fn name_of<K: LabelSet>(set: &K) -> String {
    format!(
        "{}/{}",
        set.namespace().unwrap_or_else(|| "default".into()),
        set.name_any()
    )
}

/// As in the cluster ([`LabelSet::set_id`]): by `metadata.creationTimestamp`
/// (a manifest saved with `kubectl get -o yaml` has one; one without counts
/// as the newest), then by name. The name is `Kind/namespace/name`, the
/// state file's key; the sets on one object are all of one kind, so the
/// order among them is the cluster's `namespace/name` order.
fn set_id_of<K: LabelSet>(set: &K) -> SetId {
    SetId::new(set.created(), format!("{}/{}", K::KIND, name_of(set)))
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        with_set!(self, s => kind_of(s))
    }

    /// See [`name_of`].
    pub fn name(&self) -> String {
        with_set!(self, s => name_of(s))
    }

    pub fn resolve(&self, default_region: &str) -> Result<ResolvedSet, Vec<FieldError>> {
        with_set!(self, s => s.resolve(default_region))
    }

    /// Conflict order among the manifests of one run, see [`set_id_of`].
    pub fn set_id(&self) -> SetId {
        with_set!(self, s => set_id_of(s))
    }
}

/// A manifest together with where it came from.
#[derive(Clone, Debug)]
pub struct Located {
    pub source: String,
    pub manifest: Manifest,
}

/// A problem with one document.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ManifestError {
    /// `path` or `path (document N)`.
    pub source: String,
    pub field: String,
    pub message: String,
}

impl ManifestError {
    /// A problem with a whole file, not one of its fields.
    fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        ManifestError {
            source: path.display().to_string(),
            field: String::new(),
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.field, self.message)
        }
    }
}

/// Expands PATHs: a file is read as is; a directory contributes its `*.yaml`,
/// `*.yml` and `*.json` files (not recursive, like `kubectl apply -f DIR`), sorted.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| ManifestError::file(path, e))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| ManifestError::file(path, e))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Parses every document of every file. Returns all manifests, or every error found.
pub fn load(paths: &[PathBuf], default_region: &str) -> Result<Vec<Located>, Vec<ManifestError>> {
    let files = expand(paths).map_err(|e| vec![e])?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match super::files::read_capped(&file, super::files::MAX_MANIFEST_BYTES, "manifest file") {
            Ok(text) => parse_text(&file, &text, default_region, &mut found, &mut errors),
            Err(e) => errors.push(ManifestError::file(&file, e)),
        }
    }
    if found.is_empty() && errors.is_empty() {
        errors.push(ManifestError {
            source: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            field: String::new(),
            message: "no ImageLabelSet or DatasetLabelSet found".into(),
        });
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// Parses one file's text (also used for manifests embedded in the binary).
pub fn parse_text(
    file: &Path,
    text: &str,
    default_region: &str,
    found: &mut Vec<Located>,
    errors: &mut Vec<ManifestError>,
) {
    let docs: Vec<Value> = match serde_saphyr::from_multiple::<Value>(text) {
        Ok(d) => d,
        Err(e) => {
            errors.push(ManifestError::file(file, format!("not valid YAML: {e}")));
            return;
        }
    };
    let many = docs.iter().filter(|d| !d.is_null()).count() > 1;
    for (i, doc) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
        let source = if many {
            format!("{} (document {})", file.display(), i + 1)
        } else {
            file.display().to_string()
        };
        match parse_doc(doc, default_region) {
            Ok(manifest) => found.push(Located { source, manifest }),
            Err(errs) => errors.extend(errs.into_iter().map(|e| ManifestError {
                source: source.clone(),
                field: e.field,
                message: e.message,
            })),
        }
    }
}

fn parse_doc(doc: Value, default_region: &str) -> Result<Manifest, Vec<FieldError>> {
    let one = |field: &str, message: String| {
        vec![FieldError {
            field: field.into(),
            message,
        }]
    };
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if api_version != "imagelabel.io/v1alpha1" {
        return Err(one(
            "apiVersion",
            format!("{api_version:?} is not imagelabel.io/v1alpha1"),
        ));
    }
    if doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(one("metadata.name", "is required".into()));
    }
    let manifest = match kind.as_str() {
        "ImageLabelSet" => Manifest::Image(typed(doc)?),
        "DatasetLabelSet" => Manifest::Dataset(typed(doc)?),
        other => {
            return Err(one(
                "kind",
                format!("{other:?} is not ImageLabelSet or DatasetLabelSet"),
            ));
        }
    };
    manifest.resolve(default_region)?;
    Ok(manifest)
}

fn typed<T: serde::de::DeserializeOwned>(doc: Value) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(missing) if path == "." => missing.to_string(),
            Some(missing) => format!("{path}.{missing}"),
            None => path,
        };
        vec![FieldError {
            field,
            message: message.replace('`', ""),
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Located>, Vec<ManifestError>) {
        let mut found = vec![];
        let mut errors = vec![];
        parse_text(
            Path::new("m.yaml"),
            text,
            "cn-shanghai",
            &mut found,
            &mut errors,
        );
        (found, errors)
    }

    #[test]
    fn reads_both_kinds_from_one_stream() {
        let (found, errors) = parse(
            "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {name: a, namespace: ml}\nspec: {imageId: image-1, labels: {system.chipType: GPU}}\n---\n\
             apiVersion: imagelabel.io/v1alpha1\nkind: DatasetLabelSet\nmetadata: {name: b}\nspec: {datasetId: d-1, version: v1}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].manifest.name(), "ml/a");
        assert_eq!(found[1].manifest.name(), "default/b");
        assert_eq!(found[1].source, "m.yaml (document 2)");
    }

    #[test]
    fn a_set_saved_from_the_cluster_keeps_its_creation_time() {
        let (found, errors) = parse(
            "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\n\
             metadata: {name: a, namespace: ml, uid: u-1, resourceVersion: '7', creationTimestamp: '2026-01-01T00:00:01Z'}\n\
             spec: {imageId: image-1}\nstatus: {observedGeneration: 1, ownedKeys: [system.chipType]}\n---\n\
             apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {name: b}\nspec: {imageId: image-1}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let ids: Vec<SetId> = found.iter().map(|l| l.manifest.set_id()).collect();
        assert_eq!(ids[0], SetId::new(1_767_225_601, "ImageLabelSet/ml/a"));
        assert_eq!(ids[1], SetId::new(i64::MAX, "ImageLabelSet/default/b"));
    }

    #[test]
    fn missing_image_id_names_the_field() {
        let (_, errors) = parse(
            "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {name: a}\nspec: {labels: {}}\n",
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.imageId");
    }

    #[test]
    fn bad_enum_names_the_field() {
        let (_, errors) = parse(
            "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {name: a}\nspec: {imageId: i, prune: Some}\n",
        );
        assert_eq!(errors[0].field, "spec.prune", "{errors:?}");
    }

    #[test]
    fn wrong_kind_and_yaml_errors_are_reported() {
        let (_, errors) =
            parse("apiVersion: imagelabel.io/v1alpha1\nkind: Other\nmetadata: {name: a}\n");
        assert_eq!(errors[0].field, "kind");
        let (_, errors) = parse("a: [\n");
        assert!(errors[0].message.contains("YAML"));
    }
}
