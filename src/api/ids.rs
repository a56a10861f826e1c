//! The shapes of cloud IDs a set may name. Each ID ends up in a request
//! path (`/api/v1/datasets/{id}/versions/{version}`, `/v2/{project}/images/{id}/tags`):
//! anything beyond the documented alphabet (`/`, `.`, `..`, `%`, `?`, `#`,
//! spaces) could make the request reach another object than the one the
//! set, the claim index and the signature agree on. The CRD carries the same
//! patterns (`spec.rs`); a test keeps the two equal.
//!
//! Sources: PAI image IDs are `image-` plus lowercase alphanumerics and
//! dataset IDs `d-` plus lowercase alphanumerics (AIWorkSpace API examples
//! `image-4c62666c1d57de2b`, `d-rbvg5wzljzjhc9ks92`); dataset versions are
//! named by PAI as `v1`, `v2`, …; workspace IDs are decimal. IMS image IDs are
//! UUIDs and Huawei Cloud project IDs 32 lowercase hex digits. The upper
//! lengths are not documented: they are generous bounds, and every pattern
//! admits only `[a-z0-9-]`, so `.` and `..` can never match.

/// CRD / CEL regular expressions, in the order of [`IdKind`].
pub const PAI_IMAGE_ID: &str = "^image-[a-z0-9]{1,64}$";
pub const PAI_DATASET_ID: &str = "^d-[a-z0-9]{1,64}$";
pub const PAI_DATASET_VERSION: &str = "^v[0-9]{1,9}$";
pub const PAI_WORKSPACE_ID: &str = "^[0-9]{1,20}$";
pub const IMS_IMAGE_ID: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
pub const IMS_PROJECT_ID: &str = "^[0-9a-f]{32}$";
/// A Kubernetes object name (DNS-1123 subdomain), as Secrets are named.
pub const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    PaiImage,
    PaiDataset,
    PaiDatasetVersion,
    PaiWorkspace,
    ImsImage,
    ImsProject,
    SecretName,
}

impl IdKind {
    /// What a valid ID looks like, for error messages.
    pub fn shape(self) -> &'static str {
        match self {
            IdKind::PaiImage => "a PAI image ID: image- and 1-64 lowercase letters or digits",
            IdKind::PaiDataset => "a PAI dataset ID: d- and 1-64 lowercase letters or digits",
            IdKind::PaiDatasetVersion => "a PAI dataset version name: v and 1-9 digits (v1, v2, …)",
            IdKind::PaiWorkspace => "a PAI workspace ID: 1-20 digits",
            IdKind::ImsImage => "an IMS image ID: a lowercase UUID",
            IdKind::ImsProject => "a Huawei Cloud project ID: 32 lowercase hex digits",
            IdKind::SecretName => {
                "a Secret name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253)"
            }
        }
    }

    pub fn pattern(self) -> &'static str {
        match self {
            IdKind::PaiImage => PAI_IMAGE_ID,
            IdKind::PaiDataset => PAI_DATASET_ID,
            IdKind::PaiDatasetVersion => PAI_DATASET_VERSION,
            IdKind::PaiWorkspace => PAI_WORKSPACE_ID,
            IdKind::ImsImage => IMS_IMAGE_ID,
            IdKind::ImsProject => IMS_PROJECT_ID,
            IdKind::SecretName => DNS1123_SUBDOMAIN,
        }
    }

    pub fn matches(self, s: &str) -> bool {
        let lower_alnum = |t: &str, max: usize| {
            (1..=max).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        let hex = |t: &str, n: usize| {
            t.len() == n
                && t.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        match self {
            IdKind::PaiImage => s.strip_prefix("image-").is_some_and(|t| lower_alnum(t, 64)),
            IdKind::PaiDataset => s.strip_prefix("d-").is_some_and(|t| lower_alnum(t, 64)),
            IdKind::PaiDatasetVersion => s.strip_prefix('v').is_some_and(|t| {
                (1..=9).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
            }),
            IdKind::PaiWorkspace => {
                (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
            }
            IdKind::ImsImage => {
                let parts: Vec<&str> = s.split('-').collect();
                parts.len() == 5 && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| hex(p, n))
            }
            IdKind::ImsProject => hex(s, 32),
            IdKind::SecretName => {
                s.len() <= 253
                    && s.split('.').all(|label| {
                        !label.is_empty()
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [IdKind; 7] = [
        IdKind::PaiImage,
        IdKind::PaiDataset,
        IdKind::PaiDatasetVersion,
        IdKind::PaiWorkspace,
        IdKind::ImsImage,
        IdKind::ImsProject,
        IdKind::SecretName,
    ];

    #[test]
    fn documented_examples_pass_and_path_tricks_do_not() {
        assert!(IdKind::PaiImage.matches("image-4c62666c1d57de2b"));
        assert!(IdKind::PaiDataset.matches("d-rbvg5wzljzjhc9ks92"));
        assert!(IdKind::PaiDatasetVersion.matches("v1"));
        assert!(IdKind::PaiWorkspace.matches("145883"));
        assert!(IdKind::ImsImage.matches("67e17426-359e-49fb-aa12-0bd1756ec240"));
        assert!(IdKind::ImsProject.matches("fd73a4a14a4a4dfb9771a8475e5198ea"));
        assert!(IdKind::SecretName.matches("pai-credentials.v2"));
        for kind in ALL {
            for bad in [
                "",
                ".",
                "..",
                "../x",
                "a/b",
                "%2e%2e",
                "v1?x",
                "v1#x",
                " v1",
                "image-a b",
            ] {
                assert!(!kind.matches(bad), "{kind:?} accepted {bad:?}");
            }
        }
        assert!(!IdKind::SecretName.matches("-a") && !IdKind::SecretName.matches("a..b"));
        assert!(!IdKind::SecretName.matches(&"a".repeat(254)));
    }

    /// The hand-written matchers and the CRD's regular expressions agree.
    fn regex_of(kind: IdKind) -> regex::Regex {
        regex::Regex::new(kind.pattern()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matcher_equals_crd_pattern(
            s in prop_oneof![
                "[a-z0-9./%-]{0,12}",
                "image-[a-z0-9.-]{0,6}",
                "d-[a-zA-Z0-9.]{0,6}",
                "v[0-9a.]{0,10}",
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-g]{4}-[0-9a-f]{4}-[0-9a-f]{11,13}",
                "[0-9a-fA-F]{31,33}",
                "[a-z0-9-]{0,4}(\\.[a-z0-9-]{0,4}){0,3}",
            ]
        ) {
            for kind in ALL {
                prop_assert_eq!(kind.matches(&s), regex_of(kind).is_match(&s), "{:?} on {:?}", kind, s);
            }
        }
    }
}
