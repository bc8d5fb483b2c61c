//! A small ordered header list for filters: names compared case-insensitively, order and
//! duplicates kept as on the wire.

/// Ordered `(name, value)` pairs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(String, String)>,
}

impl HeaderMap {
    /// First value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Add a value, keeping existing ones.
    pub fn append(&mut self, name: &str, value: &str) {
        self.entries.push((name.to_string(), value.to_string()));
    }
    /// Replace every value of `name` with one.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.append(name, value);
    }
    /// Remove every value of `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before - self.entries.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_and_ordered() {
        let mut h = HeaderMap::default();
        h.append("X-A", "1");
        h.append("x-a", "2");
        h.append("b", "3");
        assert_eq!(h.get("x-A"), Some("1"));
        assert_eq!(h.get_all("X-a").collect::<Vec<_>>(), vec!["1", "2"]);
        h.set("X-A", "9");
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), vec!["9"]);
        assert_eq!(h.remove("B"), 1);
        assert_eq!(h.len(), 1);
    }
}
