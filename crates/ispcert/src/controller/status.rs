//! Status writes as JSON merge patches of what changed: nothing is sent when nothing changed, and
//! fields this reconcile did not touch are never overwritten from a stale cache.

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The merge patch turning `old` into `new` (top-level fields; a removed field becomes `null`),
/// or `None` when they are equal.
pub fn diff<S: Serialize>(old: &S, new: &S) -> Option<Value> {
    let as_map = |s: &S| match serde_json::to_value(s) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let (old, new) = (as_map(old), as_map(new));
    let mut patch = Map::new();
    for (k, v) in &new {
        if old.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone());
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

/// Applies the status change, if any. With `precondition`, the write fails with a conflict when
/// the object changed since that resourceVersion was read.
pub async fn write<K, S>(
    api: &Api<K>,
    name: &str,
    old: &S,
    new: &S,
    precondition: Option<&str>,
) -> Result<bool, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let Some(status) = diff(old, new) else { return Ok(false) };
    let mut body = serde_json::json!({ "status": status });
    if let Some(rv) = precondition {
        body["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_changes_are_sent() {
        let old = json!({"a": 1, "b": [1, 2], "c": "x"});
        assert_eq!(diff(&old, &old), None);
        let new = json!({"a": 1, "b": [1, 3], "d": true});
        assert_eq!(diff(&old, &new), Some(json!({"b": [1, 3], "c": null, "d": true})));
    }
}
