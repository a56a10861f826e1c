//! What the watch caches keep of a set: its metadata, less what no
//! reconcile reads, and its spec and status as JSON text, decoded when a
//! reconcile or the claim index reads them.
//!
//! A set as listed is ~8 KB of typed object, most of it managedFields and
//! `kubectl apply`'s copy of the manifest; typed and slimmed it was still
//! 3.4 KB (a `BTreeMap` node for four labels, three conditions of six
//! fields). The text form is under half of that (`cargo bench --bench
//! footprint`), and managedFields and other tools' annotations are skipped
//! while the list is decoded instead of being built and dropped, which was
//! a fifth of the operator's CPU at start-up.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::reconcile::{ANNOTATION_PREFIX, key_of};
use super::resource::LabelSetResource;

/// A set of kind `K` as the watch caches keep it.
pub struct Cached<K> {
    meta: ObjectMeta,
    /// `{"metadata":{},"spec":…,"status":…}`, a document `K` decodes from,
    /// compressed against [`DICTIONARY`].
    body: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K: LabelSetResource> Cached<K> {
    /// The set, decoded. Every reconcile decodes its own copy (a few
    /// microseconds), so the caches never hold a typed object.
    pub fn object(&self) -> Result<K, serde_json::Error> {
        let mut obj: K = serde_json::from_slice(&unpack(&self.body)?)?;
        *obj.meta_mut() = self.meta.clone();
        Ok(obj)
    }

    /// What the caches would keep of `obj` (tests, benches).
    pub fn of(obj: &K) -> Self {
        let json = serde_json::to_vec(obj).expect("a set serializes");
        serde_json::from_slice(&json).expect("a serialized set decodes")
    }

    /// The set's key in every per-set map, as [`super::reconcile::set_key`].
    pub fn key(&self) -> String {
        key_of(
            K::KIND,
            self.meta.namespace.as_deref().unwrap_or_default(),
            self.meta.name.as_deref().unwrap_or_default(),
        )
    }
}

impl<K> Clone for Cached<K> {
    fn clone(&self) -> Self {
        Cached {
            meta: self.meta.clone(),
            body: self.body.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Cached<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("meta", &self.meta)
            .field("body", &unpack(&self.body).map(String::from_utf8))
            .finish()
    }
}

impl<K: LabelSetResource> Resource for Cached<K> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// What spec and status text mostly consists of: the field names of both
/// kinds and the values our status writer repeats. A set's body is ~1 KB
/// of JSON and most of it is in here, so LZ4 against it keeps a fraction
/// (test `a_converged_set_keeps_under_a_third_of_its_text`). Fixed for the
/// life of the process: every cached body decodes against it.
const DICTIONARY: &[u8] = br#"{"metadata":{},"spec":{"adopt":false,"credentialsRef":{"name":"pai-credentials"},"datasetId":"d-","deletionPolicy":"Delete","ignoreKeys":[],"labels":{"app":"","env":"prod","owner":"","team":"ml","version":"1"},"mode":"Sync","prune":"Owned","provider":"pai","region":"cn-shanghai","resyncInterval":"10m","version":"v1","workspaceId":"1"},"status":{"conditions":[{"lastTransitionTime":"2026-12-03T10:00:00Z","message":"","observedGeneration":1,"reason":"Applying","status":"False","type":"Drifted"},{"lastTransitionTime":"2026-12-03T10:00:00Z","message":"","observedGeneration":1,"reason":"InSync","status":"False","type":"Reconciling"},{"lastTransitionTime":"2026-12-03T10:00:00Z","message":"","observedGeneration":1,"reason":"InSync","status":"False","type":"Stalled"}],"conflicts":[],"drift":[],"fights":[],"labelCount":1,"lastHandledReconcileAt":"","lastRequestId":"","lastSyncTime":"2026-12-03T10:00:00Z","observedGeneration":1,"ownedKeys":[],"syncedGeneration":1,"target":"pai/cn-shanghai/dataset/d-"}}{"metadata":{},"spec":{"adopt":false,"deletionPolicy":"Delete","imageId":"image-","labels":{"system.":""},"mode":"Sync","projectId":"","prune":"Owned","provider":"huaweicloud-ims","region":"cn-north-4","workspaceId":"1"},"status":{"conditions":[{"lastTransitionTime":"2026-12-03T10:00:00Z","message":"labels in sync","observedGeneration":1,"reason":"InSync","status":"True","type":"Ready"},{"lastTransitionTime":"2026-12-03T10:00:00Z","message":"","observedGeneration":1,"reason":"InSync","status":"False","type":"Reconciling"},{"lastTransitionTime":"2026-12-03T10:00:00Z","message":"","observedGeneration":1,"reason":"InSync","status":"False","type":"Stalled"}],"labelCount":1,"lastSyncTime":"2026-12-03T10:00:00Z","observedGeneration":1,"ownedKeys":["system."],"syncedGeneration":1,"target":"pai/cn-shanghai/image/image-"}}"#;

fn pack(text: &[u8]) -> Box<[u8]> {
    lz4_flex::block::compress_prepend_size_with_dict(text, DICTIONARY).into_boxed_slice()
}

fn unpack(packed: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    use serde::de::Error as _;
    lz4_flex::block::decompress_size_prepended_with_dict(packed, DICTIONARY)
        .map_err(|e| serde_json::Error::custom(format!("cached set: {e}")))
}

/// The metadata a reconcile reads. Fields not named here (managedFields,
/// selfLink, generateName) are skipped while decoding, never built.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    finalizers: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "our_annotations")]
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

impl From<Meta> for ObjectMeta {
    fn from(m: Meta) -> Self {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            creation_timestamp: m.creation_timestamp,
            deletion_timestamp: m.deletion_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            finalizers: m.finalizers,
            labels: m.labels,
            annotations: m.annotations,
            owner_references: m.owner_references,
            ..ObjectMeta::default()
        }
    }
}

/// Only `imagelabel.io/` annotations; the others' values (`kubectl apply`
/// puts the whole manifest in one) are skipped unread.
fn our_annotations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Ours;
    impl<'de> Visitor<'de> for Ours {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if key.starts_with(ANNOTATION_PREFIX) {
                    kept.insert(key, map.next_value()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok((!kept.is_empty()).then_some(kept))
        }
    }
    d.deserialize_option(Ours)
}

impl<'de, K> Deserialize<'de> for Cached<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: Meta,
            #[serde(default)]
            spec: serde_json::Value,
            #[serde(default)]
            status: Option<serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            metadata: Empty,
            spec: &'a serde_json::Value,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Empty {}
        let wire = Wire::deserialize(d)?;
        let body = serde_json::to_string(&Body {
            metadata: Empty {},
            spec: &wire.spec,
            status: wire.status.as_ref(),
        })
        .map_err(de::Error::custom)?;
        Ok(Cached {
            meta: wire.metadata.into(),
            body: pack(body.as_bytes()),
            kind: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImageLabelSet, ImageLabelSetSpec, LabelSetStatus};

    fn listed() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "imagelabel.io/v1alpha1",
            "kind": "ImageLabelSet",
            "metadata": {
                "name": "s", "namespace": "ns", "uid": "u-1", "resourceVersion": "7",
                "generation": 3, "creationTimestamp": "2026-12-03T10:00:00Z",
                "deletionTimestamp": "2026-12-03T11:00:00Z",
                "finalizers": ["imagelabel.io/finalizer"],
                "labels": {"team": "ml"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a\":{\"b\":1}}",
                    "imagelabel.io/paused": "true"
                },
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "generateName": "s-"
            },
            "spec": {"imageId": "image-1", "workspaceId": "1001", "labels": {"a": "1"}},
            "status": {"ownedKeys": ["a"], "observedGeneration": 3}
        })
    }

    #[test]
    fn keeps_what_a_reconcile_reads_and_drops_the_rest() {
        let cached: Cached<ImageLabelSet> = serde_json::from_value(listed()).unwrap();
        let typed: ImageLabelSet = serde_json::from_value(listed()).unwrap();
        let obj = cached.object().unwrap();
        assert_eq!(obj.spec, typed.spec);
        assert_eq!(obj.status, typed.status);
        let (m, t) = (&obj.metadata, &typed.metadata);
        assert_eq!(
            (
                &m.name,
                &m.namespace,
                &m.uid,
                &m.resource_version,
                m.generation
            ),
            (
                &t.name,
                &t.namespace,
                &t.uid,
                &t.resource_version,
                t.generation
            )
        );
        assert_eq!(m.creation_timestamp, t.creation_timestamp);
        assert_eq!(m.deletion_timestamp, t.deletion_timestamp);
        assert_eq!(m.finalizers, t.finalizers);
        assert_eq!(m.labels, t.labels);
        assert_eq!(
            m.annotations,
            Some(BTreeMap::from([(
                "imagelabel.io/paused".to_string(),
                "true".to_string()
            )]))
        );
        assert_eq!(m.managed_fields, None);
        assert_eq!(m.generate_name, None);
        assert_eq!(cached.key(), "ImageLabelSet/ns/s");
    }

    #[test]
    fn a_set_without_status_or_annotations_round_trips() {
        let mut set = ImageLabelSet::new("s", ImageLabelSetSpec::default());
        set.metadata.namespace = Some("ns".into());
        let back = Cached::of(&set).object().unwrap();
        assert_eq!(
            (&back.metadata, &back.spec, &back.status),
            (&set.metadata, &set.spec, &set.status)
        );
        set.status = Some(LabelSetStatus::default());
        set.metadata.annotations = Some(BTreeMap::from([("other/x".into(), "y".into())]));
        let back = Cached::of(&set).object().unwrap();
        assert_eq!(back.status, set.status);
        assert_eq!(back.metadata.annotations, None);
    }

    /// A set as the API server returns it once the operator converged it.
    fn converged(i: usize) -> serde_json::Value {
        let cond = |t: &str, status: &str, msg: &str| {
            serde_json::json!({"type": t, "status": status, "reason": "InSync", "message": msg,
                "lastTransitionTime": "2026-12-03T19:40:11Z", "observedGeneration": 1})
        };
        serde_json::json!({
            "apiVersion": "imagelabel.io/v1alpha1",
            "kind": "ImageLabelSet",
            "metadata": {"name": format!("set{i:05}"), "namespace": "bench", "uid": "u", "generation": 1},
            "spec": {"provider": "pai", "imageId": format!("image-bench{i:05}"), "workspaceId": "1001",
                "labels": {"system.a": "1", "system.b": "2", "system.c": "3", "system.e": i.to_string()},
                "prune": "Owned", "deletionPolicy": "Delete", "mode": "Sync", "adopt": false},
            "status": {"observedGeneration": 1, "syncedGeneration": 1, "labelCount": 5,
                "lastSyncTime": "2026-12-03T19:40:11Z",
                "target": format!("pai/cn-shanghai/image/image-bench{i:05}"),
                "ownedKeys": ["system.a", "system.b", "system.c", "system.e"],
                "conditions": [cond("Ready", "True", "4 labels in sync"),
                    cond("Reconciling", "False", ""), cond("Stalled", "False", "")]}
        })
    }

    #[test]
    fn a_converged_set_keeps_under_a_third_of_its_text() {
        let doc = converged(42);
        let cached: Cached<ImageLabelSet> = serde_json::from_value(doc.clone()).unwrap();
        let text = unpack(&cached.body).unwrap();
        println!(
            "body: {} B of text kept as {} B",
            text.len(),
            cached.body.len()
        );
        assert!(
            cached.body.len() * 3 < text.len(),
            "{} B kept of {} B",
            cached.body.len(),
            text.len()
        );
        let typed: ImageLabelSet = serde_json::from_value(doc).unwrap();
        let obj = cached.object().unwrap();
        assert_eq!((obj.spec, obj.status), (typed.spec, typed.status));
    }

    proptest::proptest! {
        /// Any labels and messages (escapes, non-ASCII, long runs) come back
        /// as they went in.
        #[test]
        fn any_body_round_trips(
            labels in proptest::collection::btree_map(".{0,20}", ".{0,40}", 0..8),
            message in ".{0,300}",
            owned in proptest::collection::vec("[a-z./]{1,30}", 0..6),
        ) {
            let mut set = ImageLabelSet::new("s", ImageLabelSetSpec { labels, ..Default::default() });
            set.metadata.namespace = Some("ns".into());
            let mut status = LabelSetStatus { owned_keys: owned, ..Default::default() };
            status.last_request_id = Some(message);
            set.status = Some(status);
            let back = Cached::of(&set).object().unwrap();
            proptest::prop_assert_eq!((back.spec, back.status), (set.spec, set.status));
        }
    }

    #[test]
    fn a_null_annotation_map_is_none() {
        let mut doc = listed();
        doc["metadata"]["annotations"] = serde_json::Value::Null;
        let cached: Cached<ImageLabelSet> = serde_json::from_value(doc).unwrap();
        assert_eq!(cached.meta().annotations, None);
    }
}
