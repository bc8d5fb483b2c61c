//! Filter state: small named values a filter sets on a stream for the access log
//! (`%FILTER_STATE(key)%`, and `%DYNAMIC_METADATA(namespace:key)%` for keys written as
//! `namespace.key`). Empty, and holding no allocation, unless a filter writes to it.

use std::borrow::Cow;

/// Named values set by filters on one stream, in the order they were first set. A fixed value
/// (`"hit"`) is kept as a `&'static str`: setting it allocates nothing once the list has room.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilterState {
    values: Vec<(&'static str, Cow<'static, str>)>,
}

impl FilterState {
    /// Set `key` (replacing an earlier value).
    pub fn set(&mut self, key: &'static str, value: impl Into<Cow<'static, str>>) {
        let value = value.into();
        match self.values.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.values.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(k, v)| (*k, v.as_ref()))
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Forget every value (keeps the allocation).
    pub fn clear(&mut self) {
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces() {
        let mut s = FilterState::default();
        s.set("cache.status", "miss");
        s.set("cache.status", "hit");
        s.set("a", "1");
        assert_eq!(s.get("cache.status"), Some("hit"));
        assert_eq!(s.iter().count(), 2);
    }
}
