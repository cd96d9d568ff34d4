//! A map of a few entries kept per trial, as one sorted vector. A `BTreeMap` allocates a whole
//! node (room for 11 entries) for its first one: with a trial's levels that was 4.4 KB per
//! trial for a one-process worker, and 632 bytes for two parameters (issue 35: a million
//! trials must fit). Lookups are binary searches; it reads and writes (serde) as a map, so
//! recordings and the JSON of findings are what a `BTreeMap` gave.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq)]
pub struct Few<K, V>(Vec<(K, V)>);

impl<K, V> Default for Few<K, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K: Ord, V> Few<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// As a `BTreeMap`'s: a `Few<String, _>` is asked with a `&str`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.0
            .binary_search_by(|(k, _)| k.borrow().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Sets `key` to `value`, replacing what it had.
    pub fn insert(&mut self, key: K, value: V) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                // A first entry gets room for one, not a Vec's four: a trial's few.
                if self.0.len() < 4 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (key, value))
            }
        }
    }

    /// In key order, as a `BTreeMap` iterates.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// As a `BTreeMap`'s: panics where the key is absent (tests read findings so).
impl<K, V, Q> std::ops::Index<&Q> for Few<K, V>
where
    K: Ord + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
{
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for this key")
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for Few<K, V> {
    /// The last value of a repeated key wins, as in a `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        let mut entries: Vec<(K, V)> = items.into_iter().collect();
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries.shrink_to_fit();
        Self(entries)
    }
}

impl<K: Serialize, V: Serialize> Serialize for Few<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K, V> Deserialize<'de> for Few<K, V>
where
    K: Ord + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<K, V>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::Few;

    #[test]
    fn it_reads_like_a_btreemap() {
        let few: Few<i32, &str> = [(3, "c"), (1, "a"), (3, "C"), (2, "b")]
            .into_iter()
            .collect();
        assert_eq!(
            few.iter().collect::<Vec<_>>(),
            [(&1, &"a"), (&2, &"b"), (&3, &"C")]
        );
        assert_eq!(few.get(&2), Some(&"b"));
        assert_eq!(few.get(&4), None);
        let json = serde_json::to_string(&few).expect("serializes");
        assert_eq!(json, r#"{"1":"a","2":"b","3":"C"}"#);
        let back: Few<i32, String> = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back.get(&3).map(String::as_str), Some("C"));
    }
}
