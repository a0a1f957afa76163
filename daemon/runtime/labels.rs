//! Container labels: the caller's key/value pairs kept with a container, and the selectors
//! ListContainers filters on. The limits are checked here and nowhere else.
use std::collections::BTreeMap;

use crate::quote::shorten;

/// The longest key, in bytes (keys are at least 1).
const MAX_KEY: usize = 255;
/// The longest value, in bytes.
const MAX_VALUE: usize = 4096;
/// The most pairs a container (or a selector) may have.
const MAX_COUNT: usize = 64;
/// The most bytes of keys and values together. Labels travel in every Get and List answer
/// and in state.json, so a container carries a few of them, not a document: this is far
/// below what `MAX_COUNT` pairs of the largest size would add up to.
const MAX_TOTAL: usize = 16 * 1024;

/// Which pairs broke a limit; `what` is "labels" or "label selector".
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error(
        "{what}: key {} is {len} bytes; keys are 1 to {MAX_KEY} bytes",
        shorten(key)
    )]
    Key {
        what: &'static str,
        key: String,
        len: usize,
    },
    #[error(
        "{what}: the value of {} is {len} bytes; values are at most {MAX_VALUE} bytes",
        shorten(key)
    )]
    Value {
        what: &'static str,
        key: String,
        len: usize,
    },
    #[error("{what}: {count} pairs; at most {MAX_COUNT}")]
    Count { what: &'static str, count: usize },
    #[error("{what}: {total} bytes of keys and values; at most {MAX_TOTAL}")]
    Total { what: &'static str, total: usize },
}

/// Labels within the limits: the only way a caller's pairs reach a container.
#[derive(Debug)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    pub fn parse(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, LabelError> {
        checked("labels", pairs).map(Self)
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

/// A ListContainers filter: a container matches when it carries every pair. Held to the
/// limits of labels, since a pair no label can be never matches, and matching costs a
/// lookup per pair per container.
#[derive(Clone, Debug, Default)]
pub struct Selector(BTreeMap<String, String>);

impl Selector {
    pub fn parse(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, LabelError> {
        checked("label selector", pairs).map(Self)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    }
}

fn checked(
    what: &'static str,
    pairs: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, LabelError> {
    let map: BTreeMap<String, String> = pairs.into_iter().collect();
    if map.len() > MAX_COUNT {
        return Err(LabelError::Count {
            what,
            count: map.len(),
        });
    }
    for (key, value) in &map {
        if !(1..=MAX_KEY).contains(&key.len()) {
            return Err(LabelError::Key {
                what,
                key: key.clone(),
                len: key.len(),
            });
        }
        if value.len() > MAX_VALUE {
            return Err(LabelError::Value {
                what,
                key: key.clone(),
                len: value.len(),
            });
        }
    }
    let total = map.iter().map(|(key, value)| key.len() + value.len()).sum();
    if total > MAX_TOTAL {
        return Err(LabelError::Total { what, total });
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn labels_at_every_limit_are_accepted() {
        let key = "k".repeat(MAX_KEY);
        let value = "v".repeat(MAX_VALUE);
        let labels = Labels::parse(pairs(&[(&key, &value), ("empty", "")])).unwrap();
        assert_eq!(labels.into_map().len(), 2);
        let many: Vec<_> = (0..MAX_COUNT)
            .map(|i| (i.to_string(), "x".into()))
            .collect();
        assert!(Labels::parse(many).is_ok());
        // Four values of 4 KB minus their one-byte keys: exactly the total.
        let full: Vec<_> = (0..4)
            .map(|i| (i.to_string(), "v".repeat(MAX_TOTAL / 4 - 1)))
            .collect();
        assert!(Labels::parse(full).is_ok());
    }

    #[test]
    fn each_limit_is_refused_by_name() {
        let long_key = "k".repeat(MAX_KEY + 1);
        let long_value = "v".repeat(MAX_VALUE + 1);
        let cases = [
            (pairs(&[("", "v")]), "labels: key \"\" is 0 bytes"),
            (
                pairs(&[(&long_key, "v")]),
                "is 256 bytes; keys are 1 to 255",
            ),
            (
                pairs(&[("big", &long_value)]),
                "labels: the value of \"big\" is 4097 bytes",
            ),
        ];
        for (labels, expected) in cases {
            let error = Labels::parse(labels).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let many: Vec<_> = (0..=MAX_COUNT)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        let error = Labels::parse(many).unwrap_err().to_string();
        assert_eq!(error, "labels: 65 pairs; at most 64");
        let heavy: Vec<_> = (0..5).map(|i| (i.to_string(), "v".repeat(4000))).collect();
        let error = Labels::parse(heavy).unwrap_err().to_string();
        assert_eq!(
            error,
            "labels: 20005 bytes of keys and values; at most 16384"
        );
        let error = Selector::parse(pairs(&[("", "")])).unwrap_err().to_string();
        assert!(error.starts_with("label selector: key"), "{error}");
    }

    #[test]
    fn a_selector_matches_when_every_pair_does() {
        let labels = Labels::parse(pairs(&[("app", "web"), ("tier", "front")]))
            .unwrap()
            .into_map();
        let selector = |list: &[(&str, &str)]| Selector::parse(pairs(list)).unwrap();
        assert!(selector(&[]).matches(&labels));
        assert!(selector(&[("app", "web")]).matches(&labels));
        assert!(selector(&[("app", "web"), ("tier", "front")]).matches(&labels));
        assert!(!selector(&[("app", "web"), ("tier", "back")]).matches(&labels));
        assert!(!selector(&[("app", "")]).matches(&labels));
        assert!(!selector(&[("owner", "x")]).matches(&labels));
    }
}
