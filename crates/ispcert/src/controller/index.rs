//! A secondary index over a watched kind, kept from the watch's own events: a question such as
//! "which certificates of this namespace name this Secret" costs a lookup instead of a scan of
//! every cached object (a scan in each reconcile made a burst of N certificates cost O(N²)).
//!
//! Like the reflector's store, a re-list replaces the index only once it is complete, so that a
//! reader never sees a partial one.

use std::collections::{BTreeSet, HashMap};
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
    by: HashMap<K, BTreeSet<V>>,
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
            values.remove(&value);
            if values.is_empty() {
                self.by.remove(&key);
            }
        }
    }

    fn insert(&mut self, object: String, entry: Option<(K, V)>) {
        self.remove(&object);
        if let Some((key, value)) = entry {
            self.by.entry(key.clone()).or_default().insert(value.clone());
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
    pub fn first(&self, key: &K) -> Option<V> {
        self.lock().by.get(key).and_then(|values| values.first().cloned())
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
        assert_eq!(index.first(&"x".into()).as_deref(), Some("a"), "the smallest value");
        apply(watcher::Event::Apply(object("a", "y")));
        assert_eq!(index.first(&"x".into()).as_deref(), Some("b"), "a moved to another key");
        apply(watcher::Event::Apply(object("b", "")));
        assert_eq!(index.first(&"x".into()), None, "b contributes nothing now");
        apply(watcher::Event::Delete(object("a", "y")));
        assert_eq!(index.first(&"y".into()), None);

        apply(watcher::Event::Apply(object("c", "z")));
        apply(watcher::Event::Init);
        apply(watcher::Event::InitApply(object("d", "z")));
        assert_eq!(index.first(&"z".into()).as_deref(), Some("c"), "no partial index during a re-list");
        apply(watcher::Event::InitDone);
        assert_eq!(index.first(&"z".into()).as_deref(), Some("d"), "c was not in the re-list");
    }
}
