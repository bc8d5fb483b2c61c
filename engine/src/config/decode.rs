//! The serde pass: a `serde_json::Value` tree -> the [`schema`](super::schema) structs, keeping
//! going after an error so one run reports as much as it can.
//!
//! serde stops at the first error, so [`decode`] retries: after an unknown key it drops that key,
//! after a bad value under a key it drops the key (an optional key then takes its default; a
//! required one ends the element, without a second "missing" error for it), and tries again,
//! recording each error with its path (from `serde_path_to_error`). Each element of a list of
//! maps is decoded on its own as an [`Item`], so an element that cannot be read at all loses
//! only itself: its siblings are still read and validated.

use serde::{de::DeserializeOwned, Deserialize, Deserializer};
use serde_json::Value;

use super::{
    error::{Problem, Spot},
    path::{DocPath, Seg},
};

/// Retries per element before giving up (each retry removes one key).
const MAX_RETRIES: usize = 100;

/// One element of a list in the file (or the whole file), read on its own.
#[derive(Debug)]
pub struct Item<T> {
    /// The element, if it could be read (possibly after dropping bad keys: then `problems` is
    /// not empty and the config will not load, but validation still looks inside it).
    pub value: Option<T>,
    /// Errors found while reading it, with paths relative to the element.
    pub(crate) problems: Vec<Problem>,
    /// The element's `name`, when it has a string one: an unreadable cluster still counts as
    /// defined, so routes naming it do not get a second, misleading error.
    pub(crate) name: Option<String>,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(decode(Value::deserialize(d)?))
    }
}

/// Reads `value` as a `T`, collecting every error it can (see the module doc).
pub(crate) fn decode<T: DeserializeOwned>(mut value: Value) -> Item<T> {
    let name = value.get("name").and_then(Value::as_str).map(str::to_owned);
    let mut problems = Vec::new();
    let mut dropped: Vec<DocPath> = Vec::new();
    for _ in 0..MAX_RETRIES {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => {
                return Item {
                    value: Some(t),
                    problems,
                    name,
                }
            }
            Err(e) => e,
        };
        let path = doc_path(err.path());
        let message = err.inner().to_string();
        if let Some((key, rest)) = backticked(&message, "unknown field `") {
            let child = child_path(&path, key);
            let rest = rest.trim_start_matches(", ");
            let hint = super::suggest::closest(key, super::suggest::backticked(rest))
                .map_or_else(String::new, |c| format!("did you mean `{c}`? "));
            problems.push(Problem::new(
                child.clone(),
                format!("unknown key, {hint}{rest}"),
                Spot::Key,
            ));
            if remove_key(&mut value, &child) {
                continue;
            }
            break;
        }
        if let Some((key, _)) = backticked(&message, "missing field `") {
            let child = child_path(&path, key);
            if !dropped.contains(&child) {
                problems.push(Problem::new(child, "required key is missing", Spot::Parent));
            }
            break;
        }
        problems.push(Problem::new(path.clone(), tidy(&message), Spot::Value));
        if matches!(path.last(), Some(Seg::Key(_))) && remove_key(&mut value, &path) {
            dropped.push(path);
            continue;
        }
        break;
    }
    Item {
        value: None,
        problems,
        name,
    }
}

fn doc_path(path: &serde_path_to_error::Path) -> DocPath {
    let mut out = DocPath::root();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => out.push(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

/// The path of key `key` of the map at `path`: serde_path_to_error reports an unknown key with
/// the key already on the path, a missing one without it.
fn child_path(path: &DocPath, key: &str) -> DocPath {
    match path.last() {
        Some(Seg::Key(k)) if k == key => path.clone(),
        _ => path.key(key),
    }
}

/// For `message` = `{prefix}NAME` + "`" + rest, returns (NAME, rest).
fn backticked<'a>(message: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let tail = message.strip_prefix(prefix)?;
    let end = tail.find('`')?;
    Some((&tail[..end], &tail[end + 1..]))
}

/// serde's wording, in the config file's terms.
fn tidy(message: &str) -> String {
    // `unknown variant `x`, expected one of ...`: name the close one.
    let mut message = message.to_string();
    if let Some((word, rest)) = backticked(&message, "unknown variant `") {
        if let Some(c) = super::suggest::closest(word, super::suggest::backticked(rest)) {
            let at = message.len() - rest.len();
            message.insert_str(at, &format!(" (did you mean `{c}`?)"));
        }
    }
    message
        .replace("expected u16", "expected an integer from 0 to 65535")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected usize", "expected a non-negative integer")
        .replace("a sequence", "a list")
        .replace("type: sequence", "type: list")
}

/// Removes the map entry `path` points at; false if there is none.
fn remove_key(root: &mut Value, path: &DocPath) -> bool {
    let Some((last, parents)) = path.segs().split_last() else {
        return false;
    };
    let mut node = root;
    for seg in parents {
        let next = match (seg, node) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k),
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (last, node) {
        (Seg::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        _ => false,
    }
}
