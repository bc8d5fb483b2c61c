//! Where things are in a config document: [`DocPath`] names a node the way error messages print
//! it (`clusters[1].endpoints[0]`), and [`Lines`] maps a path to the 1-based line of its value and
//! of its key.
//!
//! The YAML and JSON readers fill a [`Lines`] once, while they read the text; after that nothing
//! looks at the text again: the serde pass and `validate()` report problems by [`DocPath`] and the
//! loader looks the line up here at the very end.

use std::{collections::HashMap, fmt};

/// One step into a document: a key of a map or an index of a list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the top of the document to one node. The empty path is the whole document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct DocPath(Vec<Seg>);

impl DocPath {
    /// The whole document.
    pub(crate) fn root() -> DocPath {
        DocPath(Vec::new())
    }

    /// This path, then the map key `key`.
    pub(crate) fn key(&self, key: &str) -> DocPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        DocPath(segs)
    }

    /// This path, then the list index `index`.
    pub(crate) fn index(&self, index: usize) -> DocPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        DocPath(segs)
    }

    /// This path followed by `rel` (a path relative to this node).
    pub(crate) fn join(&self, rel: &DocPath) -> DocPath {
        let mut segs = self.0.clone();
        segs.extend(rel.0.iter().cloned());
        DocPath(segs)
    }

    /// Appends one step in place.
    pub(crate) fn push(&mut self, seg: Seg) {
        self.0.push(seg);
    }

    /// Removes the last step in place.
    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }

    /// The enclosing node's path (the root is its own parent).
    pub(crate) fn parent(&self) -> DocPath {
        let mut segs = self.0.clone();
        segs.pop();
        DocPath(segs)
    }

    /// The last step, if any.
    pub(crate) fn last(&self) -> Option<&Seg> {
        self.0.last()
    }

    /// The steps, first to last.
    pub(crate) fn segs(&self) -> &[Seg] {
        &self.0
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

/// `listeners[0].filter_chains[0].filters[0]`; a key that is not a plain word prints quoted:
/// `headers["x y"]`. The root prints as nothing.
impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) if is_word(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}

fn is_word(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 1-based line numbers of the values and keys of one document.
#[derive(Debug, Default)]
pub struct Lines {
    value: HashMap<DocPath, usize>,
    key: HashMap<DocPath, usize>,
}

impl Lines {
    /// Records the line where the value at `path` starts (first record wins).
    pub(crate) fn set_value(&mut self, path: &DocPath, line: usize) {
        self.value.entry(path.clone()).or_insert(line);
    }

    /// Records the line of the key that names `path` (first record wins).
    pub(crate) fn set_key(&mut self, path: &DocPath, line: usize) {
        self.key.entry(path.clone()).or_insert(line);
    }

    /// Line of the value at `path`, or of the nearest enclosing node that has one (a path
    /// inside an alias, say, reports the alias's line).
    pub(crate) fn value_line(&self, path: &DocPath) -> Option<usize> {
        let mut p = path.clone();
        loop {
            if let Some(&line) = self.value.get(&p) {
                return Some(line);
            }
            if p.is_root() {
                return None;
            }
            p = p.parent();
        }
    }

    /// Line of the key naming `path`, falling back to [`Lines::value_line`].
    pub(crate) fn key_line(&self, path: &DocPath) -> Option<usize> {
        self.key
            .get(path)
            .copied()
            .or_else(|| self.value_line(path))
    }
}
