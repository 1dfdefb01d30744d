//! Views of a watched kind kept from the watch's own events, each holding only what is asked of
//! it: [`Index`] answers "which certificates of this namespace name this Secret" with a lookup
//! instead of a scan of every cached object (a scan in each reconcile made a burst of N
//! certificates cost O(N²)); [`Latest`] keeps a small summary of each object instead of the
//! object (the reflector's copy of a Secret's metadata took about 1.4 KiB, most of it in two
//! one-entry maps).
//!
//! Like the reflector's store, a re-list replaces a view only once it is complete, so that a
//! reader never sees a partial one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use kube::ResourceExt;
use kube::runtime::watcher;

/// Values (ordered) under keys, each object contributing at most one `(key, value)`.
pub struct Index<K, V> {
    state: Mutex<State<K, V>>,
}

struct State<K, V> {
    /// What each object ("namespace/name") contributes.
    of: HashMap<String, (K, V)>,
    /// Sorted; nearly always one value (a `BTreeSet` of one takes a node of eleven). Keys and
    /// values are cheap to clone where they are `Arc`s: `of` and `by` then share one copy.
    by: HashMap<K, Vec<V>>,
    /// Contributions seen since a re-list began.
    relist: Option<HashMap<String, (K, V)>>,
}

impl<K, V> Default for Index<K, V> {
    fn default() -> Self {
        Index { state: Mutex::new(State { of: HashMap::new(), by: HashMap::new(), relist: None }) }
    }
}

fn object_key<T: ResourceExt>(obj: &T) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

impl<K: Hash + Eq + Clone, V: Ord + Clone> State<K, V> {
    fn remove(&mut self, object: &str) {
        let Some((key, value)) = self.of.remove(object) else { return };
        if let Some(values) = self.by.get_mut(&key) {
            values.retain(|v| *v != value);
            if values.is_empty() {
                self.by.remove(&key);
            }
        }
    }

    fn insert(&mut self, object: String, entry: Option<(K, V)>) {
        self.remove(&object);
        if let Some((key, value)) = entry {
            let values = self.by.entry(key.clone()).or_default();
            if let Err(at) = values.binary_search(&value) {
                values.insert(at, value.clone());
            }
            self.of.insert(object, (key, value));
        }
    }
}

impl<K: Hash + Eq + Clone, V: Ord + Clone> Index<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, V>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one watch event; `entry` says what an object contributes (`None`: nothing).
    pub fn apply<T: ResourceExt>(&self, event: &watcher::Event<T>, entry: impl Fn(&T) -> Option<(K, V)>) {
        let mut state = self.lock();
        match event {
            watcher::Event::Apply(obj) => state.insert(object_key(obj), entry(obj)),
            watcher::Event::Delete(obj) => state.remove(&object_key(obj)),
            watcher::Event::Init => state.relist = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                if let (Some(relist), Some(e)) = (state.relist.as_mut(), entry(obj)) {
                    relist.insert(object_key(obj), e);
                }
            }
            watcher::Event::InitDone => {
                let Some(objects) = state.relist.take() else { return };
                state.of.clear();
                state.by.clear();
                for (object, e) in objects {
                    state.insert(object, Some(e));
                }
            }
        }
    }

    /// The smallest value under `key`.
    pub fn first<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().by.get(key).and_then(|values| values.first().cloned())
    }
}

/// The latest summary of each object (`None` from the summary: the object is left out).
pub struct Latest<V> {
    state: Mutex<Summaries<V>>,
    /// True once the first list is complete.
    synced: tokio::sync::watch::Sender<bool>,
}

struct Summaries<V> {
    of: HashMap<String, V>,
    /// Summaries seen since a re-list began.
    relist: Option<HashMap<String, V>>,
}

impl<V> Default for Latest<V> {
    fn default() -> Self {
        let (synced, _) = tokio::sync::watch::channel(false);
        Latest { state: Mutex::new(Summaries { of: HashMap::new(), relist: None }), synced }
    }
}

impl<V: Clone> Latest<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Summaries<V>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one watch event.
    pub fn apply<T: ResourceExt>(&self, event: &watcher::Event<T>, summary: impl Fn(&T) -> Option<V>) {
        let mut state = self.lock();
        match event {
            watcher::Event::Apply(obj) => match summary(obj) {
                Some(v) => state.of.insert(object_key(obj), v),
                None => state.of.remove(&object_key(obj)),
            },
            watcher::Event::Delete(obj) => state.of.remove(&object_key(obj)),
            watcher::Event::Init => {
                state.relist = Some(HashMap::new());
                None
            }
            watcher::Event::InitApply(obj) => {
                if let (Some(relist), Some(v)) = (state.relist.as_mut(), summary(obj)) {
                    relist.insert(object_key(obj), v);
                }
                None
            }
            watcher::Event::InitDone => {
                if let Some(objects) = state.relist.take() {
                    state.of = objects;
                }
                self.synced.send_replace(true);
                None
            }
        };
    }

    /// Resolves once the first list is complete (a view still filling up would miss objects).
    pub async fn wait_until_ready(&self) -> Result<(), tokio::sync::watch::error::RecvError> {
        self.synced.subscribe().wait_for(|synced| *synced).await.map(|_| ())
    }

    /// The summary of the object `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<V> {
        self.lock().of.get(&format!("{namespace}/{name}")).cloned()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn object(name: &str, group: &str) -> ConfigMap {
        let labels = [("group".to_string(), group.to_string())].into();
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn by_group(c: &ConfigMap) -> Option<(String, String)> {
        let group = c.labels().get("group").filter(|g| !g.is_empty())?;
        Some((group.clone(), c.name_any()))
    }

    #[test]
    fn lookups_follow_applies_deletes_and_complete_relists_only() {
        let index: Index<String, String> = Index::default();
        let apply = |e: watcher::Event<ConfigMap>| index.apply(&e, by_group);
        apply(watcher::Event::Apply(object("b", "x")));
        apply(watcher::Event::Apply(object("a", "x")));
        assert_eq!(index.first("x").as_deref(), Some("a"), "the smallest value");
        apply(watcher::Event::Apply(object("a", "y")));
        assert_eq!(index.first("x").as_deref(), Some("b"), "a moved to another key");
        apply(watcher::Event::Apply(object("b", "")));
        assert_eq!(index.first("x"), None, "b contributes nothing now");
        apply(watcher::Event::Delete(object("a", "y")));
        assert_eq!(index.first("y"), None);

        apply(watcher::Event::Apply(object("c", "z")));
        apply(watcher::Event::Init);
        apply(watcher::Event::InitApply(object("d", "z")));
        assert_eq!(index.first("z").as_deref(), Some("c"), "no partial index during a re-list");
        apply(watcher::Event::InitDone);
        assert_eq!(index.first("z").as_deref(), Some("d"), "c was not in the re-list");
    }

    #[test]
    fn summaries_follow_applies_deletes_and_complete_relists_only() {
        let latest: Latest<String> = Latest::default();
        let group = |c: &ConfigMap| c.labels().get("group").filter(|g| !g.is_empty()).cloned();
        let apply = |e: watcher::Event<ConfigMap>| latest.apply(&e, group);
        apply(watcher::Event::Apply(object("a", "x")));
        assert_eq!(latest.get("ns", "a").as_deref(), Some("x"));
        apply(watcher::Event::Apply(object("a", "y")));
        assert_eq!(latest.get("ns", "a").as_deref(), Some("y"), "the latest summary");
        apply(watcher::Event::Apply(object("a", "")));
        assert_eq!(latest.get("ns", "a"), None, "a summary of nothing drops the object");
        apply(watcher::Event::Apply(object("b", "x")));
        apply(watcher::Event::Delete(object("b", "x")));
        assert_eq!(latest.get("ns", "b"), None);

        apply(watcher::Event::Apply(object("c", "z")));
        apply(watcher::Event::Init);
        apply(watcher::Event::InitApply(object("d", "z")));
        assert_eq!(latest.get("ns", "c").as_deref(), Some("z"), "no partial view during a re-list");
        assert_eq!(latest.get("ns", "d"), None);
        apply(watcher::Event::InitDone);
        assert_eq!(
            (latest.get("ns", "c"), latest.get("ns", "d").as_deref()),
            (None, Some("z")),
            "c was not in the re-list"
        );
    }
}
