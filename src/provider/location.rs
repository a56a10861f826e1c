//! Where a set's requests really go, as part of its object's identity.
//!
//! Without an endpoint override the region picks the host
//! (`aiworkspace.<region>.aliyuncs.com`, `ims.<region>.myhuaweicloud.com`),
//! so the region identifies the place. With `--pai-endpoint` /
//! `--ims-endpoint` every request goes to that one base URL whatever the
//! region says: two sets naming different regions address the same object
//! there, and must see each other's claims. The key then names the
//! endpoint instead of the region.

use std::sync::RwLock;

use crate::api::Provider;

/// The endpoint overrides of this process, per provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    pub pai: Option<String>,
    pub ims: Option<String>,
}

impl Routes {
    /// The place part of an object key: the region, or `@<endpoint>` when
    /// an override sends every request of `provider` to one base URL.
    pub fn location(&self, provider: Provider, region: &str) -> String {
        let base = match provider {
            Provider::Pai => &self.pai,
            Provider::HuaweicloudIms => &self.ims,
        };
        match base.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
            Some(b) => format!("@{}", normalize(b)),
            None => region.to_string(),
        }
    }
}

/// One spelling per base URL: scheme and host lower-cased, default port
/// and trailing slashes dropped (`HTTP://Sim:80/` is `http://sim`).
fn normalize(base: &str) -> String {
    match reqwest::Url::parse(base) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = u.path().trim_end_matches('/');
            format!("{}://{host}{port}{path}", u.scheme())
        }
        Err(_) => base.trim_end_matches('/').to_ascii_lowercase(),
    }
}

static ROUTES: RwLock<Routes> = RwLock::new(Routes {
    pai: None,
    ims: None,
});

/// Records this process's overrides (the cloud flags), once at start-up.
pub fn route_requests_to(routes: Routes) {
    *ROUTES.write().unwrap_or_else(|e| e.into_inner()) = routes;
}

/// [`Routes::location`] with this process's overrides.
pub fn location(provider: Provider, region: &str) -> String {
    ROUTES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .location(provider, region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Target;

    fn image() -> Target {
        Target::PaiImage {
            image_id: "image-abc".into(),
            workspace_id: None,
        }
    }

    #[test]
    fn an_override_makes_region_irrelevant_and_the_endpoint_part_of_the_key() {
        let direct = Routes::default();
        let key = |r: &Routes, region: &str| image().object_key(&r.location(Provider::Pai, region));
        assert_ne!(key(&direct, "cn-hangzhou"), key(&direct, "cn-shanghai"));
        assert_eq!(
            key(&direct, "cn-hangzhou"),
            "pai/cn-hangzhou/image/image-abc"
        );

        let sim = Routes {
            pai: Some("HTTP://Sim.Local:80/".into()),
            ims: None,
        };
        assert_eq!(
            key(&sim, "cn-hangzhou"),
            key(&sim, "cn-shanghai"),
            "one endpoint, one object, whatever the region says"
        );
        let same = Routes {
            pai: Some("http://sim.local".into()),
            ims: None,
        };
        assert_eq!(key(&sim, "x"), key(&same, "y"), "spellings of one URL");
        let other = Routes {
            pai: Some("http://sim.local:8081".into()),
            ims: None,
        };
        assert_ne!(
            key(&sim, "x"),
            key(&other, "x"),
            "two endpoints, two objects"
        );
        // An endpoint key never equals a region key.
        assert_ne!(key(&sim, "cn-hangzhou"), key(&direct, "cn-hangzhou"));
        // The IMS override does not move PAI objects.
        let ims_only = Routes {
            pai: None,
            ims: Some("http://sim.local".into()),
        };
        assert_eq!(key(&ims_only, "cn-hangzhou"), key(&direct, "cn-hangzhou"));
    }
}
