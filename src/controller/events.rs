//! Kubernetes Events about sets, with repeats folded into a series.
//!
//! kube-runtime's `Recorder` does the same folding but keeps every Event it
//! sent, whole, for six minutes, and only drops old ones when it sends the
//! next: after 10,000 sets converge that is ~9 MiB held until the next event,
//! and a scan of the whole cache per event. This keeps only what a repeat
//! needs (the Event's name, its count, when it was last seen) and sweeps at
//! most once a minute. The Events it writes are the same.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// A repeat within this long of the last one extends the same Event (as
/// kube-runtime and client-go do).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often entries older than the window are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The last Event sent for one (object, type, reason, action).
struct Sent {
    name: Box<str>,
    count: i32,
    at: Instant,
}

pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    sent: Mutex<(HashMap<u64, Sent>, Instant)>,
}

impl Events {
    pub fn new(client: Client, controller: &str, instance: Option<&str>) -> Self {
        Events {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or(controller).to_string(),
            sent: Mutex::new((HashMap::new(), Instant::now())),
        }
    }

    /// Sends an Event about `regarding`, or counts a repeat of the last one
    /// like it (the note of a repeat is not sent, as kube-runtime does).
    pub async fn publish(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = key(type_, reason, action, regarding);
        let repeat = self.repeat_of(key);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let now = jiff::Timestamp::now();
        let (name, count) = match repeat {
            Some((name, count)) => {
                let patch = serde_json::json!({
                    "series": EventSeries { count, last_observed_time: MicroTime(now) }
                });
                events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                (name, count)
            }
            None => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                );
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace.to_string()),
                        ..Default::default()
                    },
                    action: Some(action.to_string()),
                    reason: Some(reason.to_string()),
                    note: Some(note),
                    type_: Some(type_.as_str().to_string()),
                    event_time: Some(MicroTime(now)),
                    regarding: Some(regarding.clone()),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..Default::default()
                };
                events.create(&PostParams::default(), &event).await?;
                (name.into_boxed_str(), 1)
            }
        };
        let mut sent = self.sent.lock().expect("events poisoned");
        sent.0.insert(
            key,
            Sent {
                name,
                count,
                at: Instant::now(),
            },
        );
        Ok(())
    }

    /// The name and next count of the Event this one repeats, if any.
    fn repeat_of(&self, key: u64) -> Option<(Box<str>, i32)> {
        let mut guard = self.sent.lock().expect("events poisoned");
        let (sent, swept) = &mut *guard;
        if swept.elapsed() >= SWEEP_EVERY {
            sent.retain(|_, s| s.at.elapsed() < SERIES_WINDOW);
            sent.shrink_to_fit();
            *swept = Instant::now();
        }
        sent.get(&key)
            .filter(|s| s.at.elapsed() < SERIES_WINDOW)
            .map(|s| (s.name.clone(), s.count.saturating_add(1).max(2)))
    }

    /// Events remembered for folding repeats.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.sent.lock().expect("events poisoned").0.len()
    }
}

fn key(type_: EventType, reason: &str, action: &str, regarding: &ObjectReference) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    type_.as_str().hash(&mut h);
    reason.hash(&mut h);
    action.hash(&mut h);
    regarding.uid.hash(&mut h);
    regarding.namespace.hash(&mut h);
    regarding.name.hash(&mut h);
    regarding.kind.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline() -> Events {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Events::new(Client::try_from(config).unwrap(), "test", None)
    }

    fn remember(events: &Events, key: u64, name: &str, count: i32, ago: Duration) {
        events.sent.lock().unwrap().0.insert(
            key,
            Sent {
                name: name.into(),
                count,
                at: Instant::now() - ago,
            },
        );
    }

    #[tokio::test]
    async fn a_repeat_within_the_window_extends_the_series_and_old_ones_are_swept() {
        let events = offline();
        let regarding = ObjectReference {
            name: Some("s".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            kind: Some("ImageLabelSet".into()),
            ..Default::default()
        };
        let k = key(EventType::Normal, "LabelsApplied", "Reconcile", &regarding);
        assert_ne!(
            k,
            key(EventType::Warning, "LabelsApplied", "Reconcile", &regarding)
        );
        assert_eq!(events.repeat_of(k), None);
        remember(&events, k, "s.1", 1, Duration::ZERO);
        assert_eq!(events.repeat_of(k), Some(("s.1".into(), 2)));
        remember(&events, k, "s.1", 2, Duration::ZERO);
        assert_eq!(events.repeat_of(k), Some(("s.1".into(), 3)));
        // Past the window: a new Event, and the sweep forgets it.
        remember(&events, k, "s.1", 3, SERIES_WINDOW);
        remember(&events, 7, "t.1", 1, Duration::ZERO);
        assert_eq!(events.repeat_of(k), None);
        events.sent.lock().unwrap().1 = Instant::now() - SWEEP_EVERY;
        assert_eq!(events.repeat_of(k), None);
        assert_eq!(events.remembered(), 1);
    }
}
