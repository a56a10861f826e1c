//! The generated CRDs: committed copy up to date, and the schema (OpenAPI
//! constraints + CEL rules, as an API server would apply them) rejects the
//! bad manifests that `plan`/`apply` also reject, and accepts the examples.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn crd_schemas() -> Vec<(String, Value)> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&imagelabel::api::crds_yaml()).unwrap();
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|crd| {
            let kind = crd
                .pointer("/spec/names/kind")
                .unwrap()
                .as_str()
                .unwrap()
                .to_string();
            let schema = crd
                .pointer("/spec/versions/0/schema/openAPIV3Schema")
                .unwrap()
                .clone();
            (kind, schema)
        })
        .collect()
}

/// Fills in `default`s the way the API server does before validating.
fn apply_defaults(schema: &Value, value: &mut Value) {
    let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object_mut(),
    ) else {
        return;
    };
    for (name, sub) in props {
        if !obj.contains_key(name)
            && let Some(d) = sub.get("default")
        {
            obj.insert(name.clone(), d.clone());
        }
        if let Some(child) = obj.get_mut(name) {
            apply_defaults(sub, child);
        }
    }
}

/// Validates like admission: OpenAPI constraints, then CEL rules. Returns the messages.
fn admit(doc: &Value) -> Result<(), Vec<String>> {
    let kind = doc["kind"].as_str().unwrap();
    let (_, schema) = crd_schemas()
        .into_iter()
        .find(|(k, _)| k == kind)
        .expect("known kind");
    let mut doc = doc.clone();
    apply_defaults(&schema, &mut doc);
    let validator = jsonschema::draft4::new(&schema).expect("schema compiles");
    let mut errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect();
    if errors.is_empty()
        && let Err(cel) = kube::core::cel::Validator::new().validate(&schema, &doc, None)
    {
        errors.extend(cel.iter().map(|e| e.to_string()));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn read_doc(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn committed_crds_match_the_generated_ones() {
    let committed = std::fs::read_to_string(repo("crds/imagelabel.io.yaml")).unwrap();
    assert!(
        committed == imagelabel::api::crds_yaml(),
        "crds/imagelabel.io.yaml is stale: run `cargo run -- crd > crds/imagelabel.io.yaml`"
    );
}

#[test]
fn chart_crds_match_the_generated_ones() {
    let chart = repo("deploy/helm/imagelabel-operator/crds/imagelabel.io.yaml");
    if chart.exists() {
        assert!(
            std::fs::read_to_string(chart).unwrap() == imagelabel::api::crds_yaml(),
            "the chart's crds/ is stale: copy crds/imagelabel.io.yaml"
        );
    }
}

/// The files of tests/manifests/invalid/ with their `# <tag>: ` lines (see its README).
fn invalid_manifests() -> Vec<(String, PathBuf, String)> {
    let mut files: Vec<_> = std::fs::read_dir(repo("tests/manifests/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, p.clone(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 11,
        "expected the invalid manifests, found {files:?}"
    );
    files
}

fn expectation(text: &str, tag: &str) -> Option<String> {
    let prefix = format!("# {tag}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

#[test]
fn schema_rejects_the_invalid_manifests_naming_the_problem() {
    for (file, path, text) in invalid_manifests() {
        let verdict = admit(&read_doc(&path));
        match (
            expectation(&text, "expect-schema"),
            expectation(&text, "schema-gap"),
        ) {
            (Some(needle), None) => {
                let errors = verdict.expect_err(&file);
                assert!(
                    errors.iter().any(|e| e.contains(&needle)),
                    "{file}: expected an error containing {needle:?}, got {errors:?}"
                );
            }
            (None, Some(gap)) => assert!(
                verdict.is_ok(),
                "{file}: the schema now rejects it ({verdict:?}), so {gap:?} is no longer true: \
                 replace its `# schema-gap` line with `# expect-schema: <message>`"
            ),
            _ => panic!("{file}: needs exactly one of `# expect-schema:` and `# schema-gap:`"),
        }
    }
}

#[test]
fn cli_rejects_the_same_manifests_naming_the_field() {
    for (file, path, text) in invalid_manifests() {
        let field = expectation(&text, "expect-field")
            .unwrap_or_else(|| panic!("{file}: no `# expect-field:` line"));
        let errors = imagelabel::cli::manifest::load(&[path], "cn-shanghai").expect_err(&file);
        assert!(
            errors
                .iter()
                .any(|e| e.field == field && e.source.ends_with(&file)),
            "{file}: expected field {field}, got {errors:?}"
        );
    }
}

#[test]
fn schema_and_cli_accept_every_example() {
    let mut seen = 0;
    for path in imagelabel::cli::manifest::expand(&[repo("examples")]).unwrap() {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for doc in docs.iter().filter(|d| {
            d.get("apiVersion").and_then(Value::as_str) == Some("imagelabel.io/v1alpha1")
        }) {
            admit(doc).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            seen += 1;
        }
        imagelabel::cli::manifest::load(std::slice::from_ref(&path), "cn-shanghai")
            .unwrap_or_else(|e| panic!("{e:?}"));
    }
    assert!(
        seen >= 3,
        "expected the examples to hold at least 3 sets, found {seen}"
    );
}

/// Collects the paths of schema nodes `kubectl explain` would show without
/// a description (or with kube's placeholder).
fn undescribed(schema: &Value, path: &str, out: &mut Vec<String>) {
    let text = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    // apiVersion, kind and metadata are described by the API server itself.
    let builtin = matches!(path, ".apiVersion" | ".kind" | ".metadata");
    if !builtin && (text.trim().is_empty() || text.contains("Auto-generated")) {
        out.push(if path.is_empty() {
            "<root>".into()
        } else {
            path.into()
        });
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            undescribed(sub, &format!("{path}.{name}"), out);
        }
    }
    // Items and map values share the description of the field holding them;
    // only their own properties need one.
    for child in ["items", "additionalProperties"] {
        if let Some(sub) = schema.get(child)
            && let Some(props) = sub.get("properties").and_then(Value::as_object)
        {
            for (name, s) in props {
                undescribed(s, &format!("{path}[].{name}"), out);
            }
        }
    }
}

#[test]
fn every_kind_and_field_has_a_description() {
    for (kind, schema) in crd_schemas() {
        let mut missing = Vec::new();
        undescribed(&schema, "", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind}: `kubectl explain` would show no description for {missing:?}"
        );
    }
}

#[test]
fn a_new_set_is_not_up_to_date_before_the_operator_writes_status() {
    // The API server fills this default in when status is absent; kstatus and
    // the Argo CD check compare it with metadata.generation (at least 1).
    for (kind, schema) in crd_schemas() {
        let generation = schema.pointer("/properties/status/default/observedGeneration");
        assert_eq!(generation, Some(&Value::from(0)), "{kind}");
    }
}
