//! A request's parameters: the query string and a form body merged, decoded leniently so that no
//! byte sequence can make parsing fail (bad UTF-8 becomes U+FFFD and is then refused as a value).

use super::render::Refusal;

/// The parameters of one billing request. When a name repeats, the last value wins (the body comes
/// after the query string).
#[derive(Clone, Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Decodes `query` and, when present, a form `body`.
    pub(crate) fn parse(query: Option<&str>, body: Option<&[u8]>) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            pairs.extend(url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        if let Some(b) = body {
            pairs.extend(url::form_urlencoded::parse(b).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Params { pairs }
    }

    /// Builds parameters from pairs (tests and internal calls).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Params {
        Params { pairs: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    /// The raw value of `name` (last one wins), possibly empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The trimmed value of `name` when it is present and not blank. The billing treats an empty
    /// field like a missing one.
    pub(crate) fn filled(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The trimmed value of a required field, or `missed`/`name`.
    pub(crate) fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.filled(name).ok_or_else(|| Refusal::missed(name))
    }

    /// `true` when `name` has exactly the value `value` (used for `sok=ok`, `skipbasket=on`).
    pub(crate) fn is(&self, name: &str, value: &str) -> bool {
        self.filled(name) == Some(value)
    }

    /// All pairs, in arrival order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_overrides_query_and_bad_bytes_do_not_fail() {
        let p = Params::parse(Some("func=a&x=1&altname=a.com%20b.com"), Some(b"x=2&y=%FF%FE&z=a+b"));
        assert_eq!(p.get("func"), Some("a"));
        assert_eq!(p.get("x"), Some("2"));
        assert_eq!(p.get("y"), Some("\u{FFFD}\u{FFFD}"));
        assert_eq!(p.get("z"), Some("a b"));
        assert_eq!(p.get("altname"), Some("a.com b.com"));
        assert!(p.required("nope").is_err());
        let p = Params::parse(None, Some(b"blank=%20%20"));
        assert_eq!(p.filled("blank"), None);
        assert_eq!(p.required("blank").unwrap_err().kind, "missed");
    }
}
