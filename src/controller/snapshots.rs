//! Batched drift reads of PAI images: one paged `ListImages` (`Verbose=true`,
//! 100 a page) of a workspace answers the drift checks of every set on it,
//! instead of one `ListImageLabels` per set.
//!
//! Rules:
//! - Only drift checks of PAI image sets with a `workspaceId` use a snapshot;
//!   edits, first syncs and failures always read their image themselves.
//! - A snapshot answers while younger than half the set's resync interval.
//! - A new one is taken only when it pays: at least two sets share the
//!   workspace (same namespace, `credentialsRef`, region) and they are at
//!   least as many as the pages it takes (from the last `TotalCount`, else
//!   `ceil(sets / 100)`).
//! - Single flight: checks of one workspace wait on the same fetch.
//! - An image this process wrote to after the snapshot was taken, or one the
//!   snapshot lacks, is not answered: the set reads it itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::provider::pai::list::{PAGE_SIZE, Page};
use crate::provider::{CloudError, Labels};

/// How long a set count of a workspace is reused.
const COUNT_FOR: Duration = Duration::from_secs(30);
/// More pages than this and the workspace is not read whole.
const MAX_PAGES: u32 = 1000;

/// One workspace's images and their labels at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub taken_at: Instant,
    /// Image id → its labels as JSON text, decoded when a check asks. A
    /// snapshot answers for a whole interval; as maps its labels were
    /// ~550 B an image (a B-tree node however few labels), 5.4 MB at
    /// 10,000 images (heaptrack), and ~60 B as text.
    images: HashMap<Box<str>, Box<str>>,
    pub pages: u32,
}

impl Snapshot {
    /// Empty, to be filled page by page with [`Snapshot::add`].
    fn new(taken_at: Instant) -> Self {
        Snapshot {
            taken_at,
            images: HashMap::new(),
            pages: 0,
        }
    }

    fn add(&mut self, id: String, labels: &Labels) {
        let text = serde_json::to_string(labels).expect("a string map serializes");
        self.images
            .insert(id.into_boxed_str(), text.into_boxed_str());
    }

    /// An image's labels, if the snapshot saw the image.
    pub fn labels(&self, image_id: &str) -> Option<Labels> {
        // Text this snapshot wrote itself; were it unreadable, the check
        // would read the image on its own.
        serde_json::from_str(self.images.get(image_id)?).ok()
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

#[derive(Default)]
struct State {
    snapshot: Option<Arc<Snapshot>>,
    /// `TotalCount` of the last fetch.
    total: Option<u64>,
    /// Sets counted on the workspace, and when.
    sets: Option<(Instant, usize)>,
    /// When this process first read the workspace: its passes fall on this
    /// time plus whole intervals.
    epoch: Option<Instant>,
}

#[derive(Default)]
struct Workspace {
    /// Held across a fetch: the single flight.
    state: tokio::sync::Mutex<State>,
    /// Images this process wrote to, and when.
    written: Mutex<HashMap<String, Instant>>,
}

/// What a snapshot says about one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub labels: Labels,
    pub taken_at: Instant,
    /// The first read of the workspace by this process (see [`next_pass`]).
    pub epoch: Instant,
}

/// The first pass of a workspace after `now`: `epoch` plus a whole number
/// of intervals. Every set a snapshot answers is due then, whenever in the
/// interval its own check fell, so after at most two intervals all sets of
/// a workspace are checked together from one read, however their checks
/// were spread before (convergence order, the restart spread).
pub fn next_pass(epoch: Instant, now: Instant, interval: Duration) -> Instant {
    let interval = interval.max(Duration::from_secs(1));
    let passed = now.saturating_duration_since(epoch).as_nanos() / interval.as_nanos();
    let passes = u32::try_from(passed + 1).unwrap_or(u32::MAX);
    epoch + interval.saturating_mul(passes)
}

/// Snapshots per (namespace, credentials, region, workspace).
#[derive(Default)]
pub struct WorkspaceSnapshots {
    by_key: Mutex<HashMap<String, Arc<Workspace>>>,
}

/// Pages a workspace read takes.
pub fn pages_needed(total: Option<u64>, sets: usize) -> u64 {
    let per = u64::from(PAGE_SIZE);
    total.unwrap_or(sets as u64).div_ceil(per).max(1)
}

/// Whether reading the workspace whole costs fewer calls than one read per set.
pub fn worth_batching(sets: usize, pages: u64) -> bool {
    sets >= 2 && sets as u64 >= pages && pages <= u64::from(MAX_PAGES)
}

/// Reads one page (from 1).
pub type PageReader<'a> = dyn Fn(u32) -> BoxFuture<'a, Result<Page, CloudError>> + Send + Sync + 'a;

/// Reads every page of a workspace.
pub async fn read_all(read: &PageReader<'_>) -> Result<(Snapshot, Option<u64>), CloudError> {
    // Kept as text page by page: the read never holds every image's map.
    let mut snapshot = Snapshot::new(Instant::now());
    let mut total = None;
    for n in 1..=MAX_PAGES {
        let page = read(n).await?;
        snapshot.pages = n;
        total = page.total_count.or(total);
        let got = page.items.len();
        for item in page.items {
            snapshot.add(item.id, &item.labels);
        }
        let done =
            got < PAGE_SIZE as usize || total.is_some_and(|t| n as u64 * u64::from(PAGE_SIZE) >= t);
        if done {
            break;
        }
    }
    // Answers as of when the read ended, as before.
    snapshot.taken_at = Instant::now();
    Ok((snapshot, total))
}

impl WorkspaceSnapshots {
    fn workspace(&self, key: &str) -> Arc<Workspace> {
        self.by_key
            .lock()
            .expect("snapshots poisoned")
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Remembers that this process wrote to `image_id`: snapshots taken
    /// before now no longer answer for it.
    pub fn written(&self, key: &str, image_id: &str) {
        let ws = self.workspace(key);
        ws.written
            .lock()
            .expect("snapshots poisoned")
            .insert(image_id.to_string(), Instant::now());
    }

    /// The labels of `image_id` from a snapshot younger than `fresh_for`,
    /// taking one first when none is and it pays (`sets` counts the sets on
    /// the workspace). `None`: read the image itself. `on_pages` is told how
    /// many pages a new snapshot read.
    pub async fn answer(
        &self,
        key: &str,
        image_id: &str,
        fresh_for: Duration,
        sets: impl FnOnce() -> usize,
        read: &PageReader<'_>,
        on_pages: impl FnOnce(u32),
    ) -> Option<Answer> {
        let ws = self.workspace(key);
        let mut state = ws.state.lock().await;
        let fresh = state
            .snapshot
            .as_ref()
            .filter(|s| s.taken_at.elapsed() < fresh_for)
            .cloned();
        let snapshot = match fresh {
            Some(s) => s,
            None => {
                let count = match state.sets {
                    Some((at, n)) if at.elapsed() < COUNT_FOR => n,
                    _ => {
                        let n = sets();
                        state.sets = Some((Instant::now(), n));
                        n
                    }
                };
                if !worth_batching(count, pages_needed(state.total, count)) {
                    return None;
                }
                match read_all(read).await {
                    Ok((s, total)) => {
                        on_pages(s.pages);
                        state.epoch.get_or_insert(s.taken_at);
                        state.total = total.or(Some(s.len() as u64));
                        let s = Arc::new(s);
                        state.snapshot = Some(s.clone());
                        s
                    }
                    Err(e) => {
                        tracing::debug!(workspace = %key, error = %e, "workspace snapshot failed; reading images one by one");
                        state.snapshot = None;
                        return None;
                    }
                }
            }
        };
        let epoch = state.epoch.unwrap_or(snapshot.taken_at);
        drop(state);
        let written_after = ws
            .written
            .lock()
            .expect("snapshots poisoned")
            .get(image_id)
            .is_some_and(|at| *at >= snapshot.taken_at);
        if written_after {
            return None;
        }
        snapshot.labels(image_id).map(|labels| Answer {
            labels,
            taken_at: snapshot.taken_at,
            epoch,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key.lock().expect("snapshots poisoned").len()
    }

    /// Drops workspaces whose snapshot is older than `older_than`.
    pub fn expire(&self, older_than: Duration) {
        self.by_key
            .lock()
            .expect("snapshots poisoned")
            .retain(|_, ws| {
                let Ok(state) = ws.state.try_lock() else {
                    return true;
                };
                state
                    .snapshot
                    .as_ref()
                    .is_some_and(|s| s.taken_at.elapsed() < older_than)
                    || state.sets.is_some_and(|(at, _)| at.elapsed() < older_than)
            });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::provider::pai::list::Listed;

    fn workspace_of(n: usize) -> Vec<Listed> {
        (0..n)
            .map(|i| Listed {
                id: format!("image-{i}"),
                name: format!("n{i}"),
                workspace_id: Some("ws".into()),
                labels: [("k".to_string(), i.to_string())].into(),
            })
            .collect()
    }

    fn reader<'a>(images: &'a [Listed], calls: &'a AtomicU32) -> Box<PageReader<'a>> {
        Box::new(move |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            let start = ((n - 1) * PAGE_SIZE) as usize;
            let items = images
                .iter()
                .skip(start)
                .take(PAGE_SIZE as usize)
                .cloned()
                .collect();
            Box::pin(async move {
                Ok(Page {
                    items,
                    total_count: Some(images.len() as u64),
                })
            })
        })
    }

    #[test]
    fn passes_fall_on_whole_intervals_after_the_epoch() {
        let epoch = Instant::now();
        let r = Duration::from_secs(300);
        let s = Duration::from_secs;
        assert_eq!(next_pass(epoch, epoch, r), epoch + r);
        assert_eq!(next_pass(epoch, epoch + s(10), r), epoch + r);
        assert_eq!(next_pass(epoch, epoch + s(299), r), epoch + r);
        assert_eq!(next_pass(epoch, epoch + s(300), r), epoch + s(600));
        assert_eq!(next_pass(epoch, epoch + s(1000), r), epoch + s(1200));
        // Checks spread over an interval all land on one pass.
        let due: std::collections::BTreeSet<Instant> = (0..300)
            .map(|t| next_pass(epoch, epoch + s(300 + t), r))
            .collect();
        assert_eq!(due.len(), 1);
    }

    #[test]
    fn batching_pays_only_with_enough_sets() {
        assert_eq!(pages_needed(None, 1), 1);
        assert_eq!(pages_needed(None, 250), 3);
        assert_eq!(pages_needed(Some(1000), 3), 10);
        assert!(!worth_batching(1, 1));
        assert!(worth_batching(2, 1));
        assert!(!worth_batching(9, 10));
        assert!(worth_batching(10, 10));
    }

    #[tokio::test]
    async fn one_read_answers_many_checks() {
        let images = workspace_of(250);
        let calls = AtomicU32::new(0);
        let read = reader(&images, &calls);
        let snaps = WorkspaceSnapshots::default();
        let fresh = Duration::from_secs(300);
        let mut pages = 0;
        for i in 0..50 {
            let a = snaps
                .answer(
                    "k",
                    &format!("image-{i}"),
                    fresh,
                    || 50,
                    &*read,
                    |p| pages += p,
                )
                .await
                .unwrap();
            assert_eq!(a.labels["k"], i.to_string());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "ceil(250/100) pages, once");
        assert_eq!(pages, 3);
        // Missing from the workspace: not answered.
        assert!(
            snaps
                .answer("k", "image-999", fresh, || 50, &*read, |_| ())
                .await
                .is_none()
        );
        // Written since: not answered.
        snaps.written("k", "image-1");
        assert!(
            snaps
                .answer("k", "image-1", fresh, || 50, &*read, |_| ())
                .await
                .is_none()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        snaps.expire(Duration::from_secs(3600));
        assert_eq!(snaps.len(), 1, "in use: kept");
        snaps.expire(Duration::ZERO);
        assert_eq!(snaps.len(), 0, "unused: dropped");
    }

    #[tokio::test]
    async fn too_few_sets_read_their_images_themselves() {
        let images = workspace_of(1000);
        let calls = AtomicU32::new(0);
        let read = reader(&images, &calls);
        let snaps = WorkspaceSnapshots::default();
        let fresh = Duration::from_secs(300);
        // First time: 5 sets, assumed 1 page: pays; TotalCount says 10 pages.
        assert!(
            snaps
                .answer("k", "image-1", fresh, || 5, &*read, |_| ())
                .await
                .is_some()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        // Stale now, and 5 sets for 10 pages does not pay.
        assert!(
            snaps
                .answer("k", "image-1", Duration::ZERO, || 5, &*read, |_| ())
                .await
                .is_none()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn concurrent_checks_share_one_fetch() {
        let images = workspace_of(120);
        let calls = AtomicU32::new(0);
        let read = reader(&images, &calls);
        let snaps = WorkspaceSnapshots::default();
        let fresh = Duration::from_secs(300);
        let checks = (0..20).map(|i| {
            let read = &*read;
            let snaps = &snaps;
            async move {
                snaps
                    .answer("k", &format!("image-{i}"), fresh, || 20, read, |_| ())
                    .await
            }
        });
        let answers = futures::future::join_all(checks).await;
        assert!(answers.iter().all(Option::is_some));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
