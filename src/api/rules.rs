//! The clouds' documented rules for one label, shared by the controller's and
//! the CLI's validation (`validate.rs`) and the simulator (`sim/store.rs`), so
//! the two cannot drift apart. The table of every rule, its source and its
//! tests is `docs/cloud-rules.md`; each rule below names its source too.

use std::collections::BTreeSet;
use std::sync::RwLock;

/// The keys AddImageLabels accepts, as its reference lists them:
/// <https://help.aliyun.com/zh/pai/developer-reference/api-aiworkspace-2021-02-04-addimagelabels>
/// (the SDK's `AddImageLabelsRequestLabels.key` lists the same 18).
/// `--extra-pai-image-keys` adds keys the cloud gained after this list.
pub const PAI_IMAGE_KEYS: [&str; 18] = [
    "system.chipType",
    "system.dsw.cudaVersion",
    "system.dsw.fromImageId",
    "system.dsw.fromInstanceId",
    "system.dsw.id",
    "system.dsw.os",
    "system.dsw.osVersion",
    "system.dsw.resourceType",
    "system.dsw.rootImageId",
    "system.dsw.stage",
    "system.dsw.tag",
    "system.dsw.type",
    "system.framework",
    "system.origin",
    "system.pythonVersion",
    "system.source",
    "system.supported.dlc",
    "system.supported.dsw",
];

/// Keys added by the operator's `--extra-pai-image-keys`; process-wide
/// because the flag configures the whole process, as the cloud's list does.
static EXTRA_PAI_IMAGE_KEYS: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Adds keys to the PAI image key list for this process (the operator flag).
pub fn allow_extra_pai_image_keys(keys: impl IntoIterator<Item = String>) {
    let mut extra = EXTRA_PAI_IMAGE_KEYS
        .write()
        .unwrap_or_else(|e| e.into_inner());
    extra.extend(
        keys.into_iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty()),
    );
}

/// The keys the flag added, for validation in this process.
pub fn extra_pai_image_keys() -> BTreeSet<String> {
    EXTRA_PAI_IMAGE_KEYS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Which characters a key or value may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// Anything but control characters and these.
    Except(&'static str),
    /// ASCII letters and digits, CJK ideographs U+4E00–U+9FFF, and these.
    Only(&'static str),
}

impl Charset {
    fn first_bad(self, s: &str) -> Option<char> {
        s.chars().find(|&c| match self {
            Charset::Except(bad) => c.is_control() || bad.contains(c),
            Charset::Only(extra) => {
                !(c.is_ascii_alphanumeric()
                    || ('\u{4E00}'..='\u{9FFF}').contains(&c)
                    || extra.contains(c))
            }
        })
    }

    pub fn describe(self) -> String {
        match self {
            Charset::Except("") => "any printable character".into(),
            Charset::Except(bad) => format!("any printable character except {}", spaced(bad)),
            Charset::Only(extra) => format!(
                "only A-Z, a-z, 0-9, CJK characters (U+4E00-U+9FFF) and {}",
                spaced(extra)
            ),
        }
    }
}

fn spaced(chars: &str) -> String {
    chars
        .chars()
        .map(|c| {
            if c == ' ' {
                "space".to_string()
            } else {
                format!("{c:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Label rules of one provider and target kind.
#[derive(Clone, Copy, Debug)]
pub struct LabelRules {
    /// Most labels one object (IMS) or one request (PAI) may carry.
    pub max_labels: usize,
    pub max_key_chars: usize,
    pub min_value_chars: usize,
    pub max_value_chars: usize,
    /// Keys must be on the PAI image key list ([`PAI_IMAGE_KEYS`] + extras).
    pub key_list: bool,
    /// Keys the cloud reserves for itself.
    pub reserved_prefixes: &'static [&'static str],
    pub key_charset: Charset,
    pub value_charset: Charset,
    /// Keys and values may not start or end with a space.
    pub no_edge_spaces: bool,
}

/// AddImageLabels. Documented: the key list. Not documented, kept from the
/// seed documents: at most 100 labels a request, keys ≤ 128 and values ≤ 256
/// characters, empty values allowed.
pub const PAI_IMAGE_RULES: LabelRules = LabelRules {
    max_labels: 100,
    max_key_chars: 128,
    min_value_chars: 0,
    max_value_chars: 256,
    key_list: true,
    reserved_prefixes: &[],
    key_charset: Charset::Except(""),
    value_charset: Charset::Except(""),
    no_edge_spaces: false,
};

/// CreateDatasetLabels / CreateDatasetVersionLabels: "key and value are
/// non-empty strings of at most 128 characters; a key cannot start with
/// aliyun, acs, http:// or https://"
/// (<https://help.aliyun.com/zh/pai/developer-reference/api-aiworkspace-2021-02-04-createdatasetlabels>);
/// the `Label` structure forbids `=` and `,` in both
/// (<https://help.aliyun.com/zh/pai/developer-reference/api-aiworkspace-2021-02-04-struct-label>,
/// which says 128 *bytes*: the API reference's characters win). Not documented,
/// kept from the seed documents: at most 100 labels a request.
pub const PAI_DATASET_RULES: LabelRules = LabelRules {
    max_labels: 100,
    max_key_chars: 128,
    min_value_chars: 1,
    max_value_chars: 128,
    key_list: false,
    reserved_prefixes: &["aliyun", "acs", "http://", "https://"],
    key_charset: Charset::Except("=,"),
    value_charset: Charset::Except("=,"),
    no_edge_spaces: false,
};

/// IMS AddImageTag / BatchAddOrDeleteTags: key 1–36, value 0–43 characters,
/// at most 10 tags an image
/// (<https://support.huaweicloud.com/api-ims/ims_03_0618.html>,
/// <https://support.huaweicloud.com/api-ims/ims_03_0617.html>); characters
/// and no leading or trailing space in keys and values from the tag format page
/// (<https://support.huaweicloud.com/api-ims/ims_03_0902.html>, which also
/// says 1–128 / 0–255: the API reference's 36 / 43 win). `_sys_` is reserved
/// by Huawei Cloud's tag service (TMS), not on the IMS pages.
pub const IMS_RULES: LabelRules = LabelRules {
    max_labels: 10,
    max_key_chars: 36,
    min_value_chars: 0,
    max_value_chars: 43,
    key_list: false,
    reserved_prefixes: &["_sys_"],
    key_charset: Charset::Only(" _.:+-@"),
    value_charset: Charset::Only(" _.:/+-@"),
    no_edge_spaces: true,
};

/// One broken rule of one label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    EmptyKey,
    KeyTooLong {
        chars: usize,
        max: usize,
    },
    KeyNotListed,
    ReservedPrefix(&'static str),
    KeyCharset(char, Charset),
    KeyEdgeSpace,
    ValueLength {
        chars: usize,
        min: usize,
        max: usize,
    },
    ValueCharset(char, Charset),
    ValueEdgeSpace,
}

impl Violation {
    /// Whether the rule concerns the value rather than the key.
    pub fn is_value(&self) -> bool {
        matches!(
            self,
            Violation::ValueLength { .. } | Violation::ValueCharset(..) | Violation::ValueEdgeSpace
        )
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::EmptyKey => {
                f.write_str("a label key is empty; every key needs at least one character")
            }
            Violation::KeyTooLong { chars, max } => {
                write!(f, "key is {chars} characters; at most {max} are allowed")
            }
            Violation::KeyNotListed => write!(
                f,
                "key is not one AddImageLabels accepts: {} (the operator's --extra-pai-image-keys adds newer ones)",
                PAI_IMAGE_KEYS.join(", ")
            ),
            Violation::ReservedPrefix(p) => {
                write!(f, "keys starting with {p:?} are reserved by the cloud")
            }
            Violation::KeyCharset(c, set) => write!(
                f,
                "key has characters the cloud does not accept ({c:?}); allowed: {}",
                set.describe()
            ),
            Violation::KeyEdgeSpace => f.write_str("key must not start or end with a space"),
            Violation::ValueLength { chars, min, max } => write!(
                f,
                "value is {chars} characters; at least {min} and at most {max} are allowed"
            ),
            Violation::ValueCharset(c, set) => write!(
                f,
                "value has characters the cloud does not accept ({c:?}); allowed: {}",
                set.describe()
            ),
            Violation::ValueEdgeSpace => f.write_str("value must not start or end with a space"),
        }
    }
}

impl LabelRules {
    /// Every rule one label breaks; `extra_keys` extends the PAI image key list.
    pub fn check(&self, key: &str, value: &str, extra_keys: &BTreeSet<String>) -> Vec<Violation> {
        let mut out = Vec::new();
        if key.is_empty() {
            out.push(Violation::EmptyKey);
        }
        let key_chars = key.chars().count();
        if key_chars > self.max_key_chars {
            out.push(Violation::KeyTooLong {
                chars: key_chars,
                max: self.max_key_chars,
            });
        }
        if self.key_list
            && !key.is_empty()
            && !PAI_IMAGE_KEYS.contains(&key)
            && !extra_keys.contains(key)
        {
            out.push(Violation::KeyNotListed);
        }
        if let Some(p) = self.reserved_prefixes.iter().find(|p| key.starts_with(**p)) {
            out.push(Violation::ReservedPrefix(p));
        }
        if let Some(c) = self.key_charset.first_bad(key) {
            out.push(Violation::KeyCharset(c, self.key_charset));
        }
        let edge = |s: &str| s.starts_with(' ') || s.ends_with(' ');
        if self.no_edge_spaces && edge(key) {
            out.push(Violation::KeyEdgeSpace);
        }
        let value_chars = value.chars().count();
        if !(self.min_value_chars..=self.max_value_chars).contains(&value_chars) {
            out.push(Violation::ValueLength {
                chars: value_chars,
                min: self.min_value_chars,
                max: self.max_value_chars,
            });
        }
        if let Some(c) = self.value_charset.first_bad(value) {
            out.push(Violation::ValueCharset(c, self.value_charset));
        }
        if self.no_edge_spaces && edge(value) {
            out.push(Violation::ValueEdgeSpace);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rules: &LabelRules, key: &str, value: &str) -> Vec<Violation> {
        rules.check(key, value, &BTreeSet::new())
    }

    #[test]
    fn pai_image_keys_come_from_the_list_or_the_extras() {
        assert_eq!(check(&PAI_IMAGE_RULES, "system.chipType", ""), vec![]);
        assert_eq!(
            check(&PAI_IMAGE_RULES, "system.official", "true"),
            vec![Violation::KeyNotListed]
        );
        let extra = BTreeSet::from(["system.official".to_string()]);
        assert_eq!(
            PAI_IMAGE_RULES.check("system.official", "true", &extra),
            vec![]
        );
    }

    #[test]
    fn pai_dataset_values_are_1_to_128_without_equals_or_comma() {
        assert_eq!(check(&PAI_DATASET_RULES, "team", &"v".repeat(128)), vec![]);
        for value in ["", &"v".repeat(129)] {
            assert!(matches!(
                check(&PAI_DATASET_RULES, "team", value)[..],
                [Violation::ValueLength { .. }]
            ));
        }
        assert!(matches!(
            check(&PAI_DATASET_RULES, "a=b", "x,y")[..],
            [
                Violation::KeyCharset('=', _),
                Violation::ValueCharset(',', _)
            ]
        ));
        for key in ["aliyunx", "acs:x", "acsx", "http://x", "https://x"] {
            assert!(
                matches!(
                    check(&PAI_DATASET_RULES, key, "v")[..],
                    [Violation::ReservedPrefix(_)]
                ),
                "{key}"
            );
        }
        assert_eq!(check(&PAI_DATASET_RULES, "http", "v"), vec![]);
    }

    #[test]
    fn ims_charset_edges_and_lengths() {
        assert_eq!(check(&IMS_RULES, "team ml_1.0:a+b-c@d", "a/b 数据"), vec![]);
        assert!(matches!(
            check(&IMS_RULES, "a=b", "v")[..],
            [Violation::KeyCharset('=', _)]
        ));
        assert!(matches!(
            check(&IMS_RULES, "k", "a=b")[..],
            [Violation::ValueCharset('=', _)]
        ));
        assert!(matches!(
            check(&IMS_RULES, "ü", "v")[..],
            [Violation::KeyCharset('ü', _)]
        ));
        assert_eq!(check(&IMS_RULES, " k", "v"), vec![Violation::KeyEdgeSpace]);
        assert_eq!(
            check(&IMS_RULES, "k", "v "),
            vec![Violation::ValueEdgeSpace]
        );
        assert_eq!(check(&IMS_RULES, "   ", "v"), vec![Violation::KeyEdgeSpace]);
        assert_eq!(check(&IMS_RULES, "k", ""), vec![]);
    }

    #[test]
    fn extras_from_the_flag_are_trimmed_and_kept() {
        allow_extra_pai_image_keys(["  system.rulesTestOnly ".to_string(), String::new()]);
        let extra = extra_pai_image_keys();
        assert!(extra.contains("system.rulesTestOnly"));
        assert!(!extra.contains(""));
    }
}
