//! Reading the clouds for an export, a page at a time.

use std::future::Future;

use super::{Found, Object};
use crate::api::rules::{IMS_RULES, PAI_IMAGE_RULES, extra_pai_image_keys};
use crate::provider::CloudError;
use crate::provider::ims::ImsClient;
use crate::provider::ims::list::PAGE_LIMIT;
use crate::provider::pai::PaiClient;
use crate::provider::pai::list::{ImageFilter, Listed, PAGE_SIZE, Page};

/// Optional narrowing of what is exported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// PAI images whose name contains this (ListImages `Name`).
    pub image_name: Option<String>,
    /// PAI images holding every one of these labels (ListImages `Labels`).
    pub image_labels: Vec<(String, String)>,
    /// IMS images holding this tag (`tag=key.value`).
    pub ims_tag: Option<(String, String)>,
    /// Skip datasets and their versions.
    pub no_datasets: bool,
}

impl Filters {
    /// Refuses a filter the cloud would refuse, naming the flag: ListImages'
    /// `Labels` keys are the AddImageLabels list and `,` / `=` separate its
    /// pairs; an IMS tag follows the tag rules.
    pub fn validate(&self) -> Result<(), String> {
        let extra = extra_pai_image_keys();
        for (k, v) in &self.image_labels {
            if let Some(bad) = PAI_IMAGE_RULES.check(k, v, &extra).first() {
                return Err(format!("--label {k}={v}: {bad}"));
            }
            if v.contains(',') || v.contains('=') {
                return Err(format!(
                    "--label {k}={v}: the value must not contain ',' or '=' (they separate ListImages' Labels filter)"
                ));
            }
        }
        if let Some((k, v)) = &self.ims_tag
            && let Some(bad) = IMS_RULES.check(k, v, &extra).first()
        {
            return Err(format!("--tag {k}={v}: {bad}"));
        }
        Ok(())
    }
}

/// Where to read: PAI workspaces and IMS projects, in one region.
pub struct ExportQuery<'a> {
    pub region: &'a str,
    pub pai: Option<&'a PaiClient>,
    pub workspaces: &'a [String],
    pub ims: Option<&'a ImsClient>,
    pub projects: &'a [String],
    pub filters: &'a Filters,
}

/// Every page of a PAI list: stops at the reported total, or at a short
/// page when the cloud reports none, so n objects cost ⌈n ÷ page size⌉
/// calls (one when there are none).
async fn all_pages<F, Fut>(mut page: F) -> Result<Vec<Listed>, CloudError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Page, CloudError>>,
{
    // The simulator's PageNumber bound; a cloud that never ends a list must
    // not keep the export calling forever.
    const MAX_PAGES: u32 = 100_000;
    let mut out = Vec::new();
    for number in 1..=MAX_PAGES {
        let p = page(number).await?;
        let short = p.items.len() < PAGE_SIZE as usize;
        out.extend(p.items);
        let done = match p.total_count {
            Some(total) => out.len() as u64 >= total || short,
            None => short,
        };
        if done {
            break;
        }
    }
    Ok(out)
}

async fn read_workspace(
    pai: &PaiClient,
    region: &str,
    workspace: &str,
    filters: &Filters,
    out: &mut Vec<Found>,
) -> Result<(), CloudError> {
    let label_filter = (!filters.image_labels.is_empty()).then(|| {
        filters
            .image_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let image_filter = ImageFilter {
        workspace_id: Some(workspace.to_string()),
        name: filters.image_name.clone(),
        labels: label_filter,
    };
    let found = |object, l: Listed| Found {
        object,
        name: l.name,
        region: region.to_string(),
        labels: l.labels,
    };
    let images = all_pages(|n| pai.list_images_page(&image_filter, n, PAGE_SIZE)).await?;
    for l in images {
        let object = Object::PaiImage {
            workspace_id: workspace.to_string(),
            image_id: l.id.clone(),
        };
        out.push(found(object, l));
    }
    if filters.no_datasets {
        return Ok(());
    }
    let datasets = all_pages(|n| pai.list_datasets_page(Some(workspace), n, PAGE_SIZE)).await?;
    for d in datasets {
        let versions = all_pages(|n| pai.list_dataset_versions_page(&d.id, n, PAGE_SIZE)).await?;
        for v in versions {
            let object = Object::PaiDatasetVersion {
                workspace_id: workspace.to_string(),
                dataset_id: d.id.clone(),
                version: v.id.clone(),
            };
            // Named after its dataset; the version name joins it in the set's name.
            out.push(Found {
                name: d.name.clone(),
                ..found(object, v)
            });
        }
        let object = Object::PaiDataset {
            workspace_id: workspace.to_string(),
            dataset_id: d.id.clone(),
        };
        out.push(found(object, d));
    }
    Ok(())
}

async fn read_project(
    ims: &ImsClient,
    region: &str,
    project: &str,
    filters: &Filters,
    out: &mut Vec<Found>,
) -> Result<(), CloudError> {
    let tag = filters.ims_tag.as_ref().map(|(k, v)| format!("{k}.{v}"));
    let mut marker: Option<String> = None;
    loop {
        let page = ims
            .list_images_page(project, tag.as_deref(), marker.as_deref(), PAGE_LIMIT)
            .await?;
        for id in page.ids {
            let tags = ims.list_image_tags(project, &id).await?;
            out.push(Found {
                object: Object::ImsImage {
                    project_id: project.to_string(),
                    image_id: id,
                },
                name: String::new(),
                region: region.to_string(),
                labels: tags.tags.into_iter().map(|t| (t.key, t.value)).collect(),
            });
        }
        match page.next_marker {
            Some(m) if Some(&m) != marker.as_ref() => marker = Some(m),
            _ => break,
        }
    }
    Ok(())
}

/// Reads every object the query names; the first failed call ends it.
pub async fn read(q: &ExportQuery<'_>) -> Result<Vec<Found>, CloudError> {
    let mut out = Vec::new();
    if let Some(pai) = q.pai {
        for w in q.workspaces {
            read_workspace(pai, q.region, w, q.filters, &mut out).await?;
        }
    }
    if let Some(ims) = q.ims {
        for p in q.projects {
            read_project(ims, q.region, p, q.filters, &mut out).await?;
        }
    }
    Ok(out)
}
