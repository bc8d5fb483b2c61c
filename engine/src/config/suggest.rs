//! "Did you mean": the closest of the known names to a misspelt one (an unknown key, variant
//! or cluster), when it is close enough to be a typo rather than another word.

/// Edit distance with adjacent transpositions (optimal string alignment), on bytes.
pub fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(!a[i - 1].eq_ignore_ascii_case(&b[j - 1]));
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if within a typo's reach: none for one or two letters (too
/// many near misses), one edit for three, two up to 8 letters, three beyond.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let reach = match word.len() {
        0..=2 => return None,
        3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= reach)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `, did you mean "x"?` for an unknown name, or nothing.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates).map_or_else(String::new, |c| format!(", did you mean {c:?}?"))
}

/// The backticked names in a serde "expected one of `a`, `b`" message.
pub fn backticked(list: &str) -> Vec<&str> {
    list.split('`').skip(1).step_by(2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_close_and_other_words_are_not() {
        assert_eq!(distance("conect_timeout", "connect_timeout"), 1);
        assert_eq!(distance("round_robbin", "round_robin"), 1);
        assert_eq!(distance("orign", "origin"), 1);
        assert_eq!(distance("nmae", "name"), 1);
        let keys = ["name", "address", "backlog", "filter_chains"];
        assert_eq!(closest("nme", keys), Some("name"));
        assert_eq!(closest("adress", keys), Some("address"));
        assert_eq!(closest("filterchains", keys), Some("filter_chains"));
        assert_eq!(closest("port", keys), None);
        assert_eq!(closest("retries", ["tls", "name", "protocol"]), None);
        assert_eq!(
            hint("orign", ["origin", "api"]),
            ", did you mean \"origin\"?"
        );
        assert_eq!(hint("zzz", ["origin"]), "");
        assert_eq!(backticked("expected one of `a`, `bc`"), vec!["a", "bc"]);
    }
}
