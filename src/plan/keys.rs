//! Protected-key patterns (`spec.ignoreKeys` plus each provider's reserved keys).

use globset::{Glob, GlobSet, GlobSetBuilder};

/// A set of glob patterns over label keys. `*` matches any run of characters,
/// including `.` and `/`, since label keys are not paths.
#[derive(Clone, Debug, Default)]
pub struct KeyMatcher {
    patterns: Vec<String>,
    /// Shared: a built set is a few KB of automata, copied with every
    /// resolved set otherwise.
    set: Option<std::sync::Arc<GlobSet>>,
}

impl KeyMatcher {
    pub fn new<I, S>(patterns: I) -> Result<Self, globset::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut builder = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            builder.add(Glob::new(p)?);
            kept.push(p.to_string());
        }
        let set = if kept.is_empty() {
            None
        } else {
            Some(std::sync::Arc::new(builder.build()?))
        };
        Ok(KeyMatcher {
            patterns: kept,
            set,
        })
    }

    pub fn matches(&self, key: &str) -> bool {
        self.set.as_ref().is_some_and(|s| s.is_match(key))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_cross_dots_and_slashes() {
        let m = KeyMatcher::new(["system.dsw.*", "acs:*", "aliyun*"]).unwrap();
        assert!(m.matches("system.dsw.os"));
        assert!(m.matches("system.dsw.a/b"));
        assert!(m.matches("acs:cluster"));
        assert!(m.matches("aliyun.x"));
        assert!(!m.matches("system.chipType"));
        assert!(!KeyMatcher::default().matches("anything"));
    }
}
