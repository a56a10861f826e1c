//! Which namespaces may use the operator's own (default) credentials.
//!
//! Anyone who may create a set in a namespace acts, through the operator,
//! with whatever account the set's credentials name. A set without
//! `credentialsRef` would act with the operator's account, so that is
//! granted per namespace by the operator's administrator, never assumed.

use std::collections::BTreeSet;

/// `--default-credentials-namespaces`: a list of namespace names, or `*`
/// for every namespace (the behaviour before this was configurable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DefaultCredentialsNamespaces {
    /// No namespace: every set must name its own Secret.
    #[default]
    None,
    Only(BTreeSet<String>),
    All,
}

impl DefaultCredentialsNamespaces {
    /// Parses the flag's comma-separated items; empty items are ignored.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        let names: BTreeSet<String> = items
            .into_iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if names.contains("*") {
            DefaultCredentialsNamespaces::All
        } else if names.is_empty() {
            DefaultCredentialsNamespaces::None
        } else {
            DefaultCredentialsNamespaces::Only(names)
        }
    }

    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            DefaultCredentialsNamespaces::None => false,
            DefaultCredentialsNamespaces::Only(names) => names.contains(namespace),
            DefaultCredentialsNamespaces::All => true,
        }
    }

    /// Why a set in `namespace` without `credentialsRef` does nothing, and
    /// the two ways out.
    pub fn refusal(namespace: &str) -> String {
        format!(
            "namespace {namespace:?} may not use the operator's default credentials: set \
             spec.credentialsRef to a Secret in this namespace, or ask the operator's \
             administrator to add {namespace:?} to --default-credentials-namespaces \
             (chart value defaultCredentials.namespaces)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_star_and_nothing() {
        let only = DefaultCredentialsNamespaces::parse(["a, b", "", "c"]);
        assert!(only.allows("a") && only.allows("b") && only.allows("c"));
        assert!(!only.allows("d"));
        // A namespace named like a prefix of an allowed one is not allowed.
        assert!(!only.allows("") && !only.allows("a "));
        assert!(DefaultCredentialsNamespaces::parse(["x,*"]).allows("anything"));
        let none = DefaultCredentialsNamespaces::parse([" , "]);
        assert_eq!(none, DefaultCredentialsNamespaces::None);
        assert!(!none.allows("default"));
    }

    #[test]
    fn refusal_names_both_ways_out() {
        let m = DefaultCredentialsNamespaces::refusal("team-a");
        assert!(m.contains("spec.credentialsRef"), "{m}");
        assert!(m.contains("--default-credentials-namespaces"), "{m}");
        assert!(m.contains("defaultCredentials.namespaces"), "{m}");
    }
}
