//! `cpu_affinity`: the CPUs this process may run on (its `sched_getaffinity` mask, which a
//! container's cpuset or `taskset` narrows), and the checks an explicit CPU list must pass
//! against them. Both the config file (`validate`) and the command line (`--cpu-affinity`) come
//! through here, so the two report the same problem in the same words.
//!
//! Read once per load, on the control thread; the runtime only applies the validated
//! [`CpuAffinity`](super::CpuAffinity).

use std::fmt::Write;

use super::model::CpuAffinity;

/// The CPU ids this process may run on, ascending (`None`: the mask could not be read, and
/// nothing is checked against it).
pub fn allowed() -> Option<Vec<usize>> {
    // SAFETY: `cpu_set_t` is plain data (all zeroes is an empty set); sched_getaffinity writes at
    // most `size_of::<cpu_set_t>()` bytes into it, and CPU_ISSET reads within it for ids below
    // CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
        Some((0..max).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

/// `0-3,6,8-9`: ids as ranges, the way `/proc/<pid>/status` prints `Cpus_allowed_list`.
pub fn ranges(ids: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = if j > i {
            write!(out, "{}-{}", ids[i], ids[j])
        } else {
            write!(out, "{}", ids[i])
        };
        i = j + 1;
    }
    out
}

/// Why CPU `id` may not be listed, if it may not (`allowed`: [`allowed`]'s answer).
pub(crate) fn refuse(id: u64, allowed: Option<&[usize]>) -> Option<String> {
    let allowed = allowed?;
    let ok = usize::try_from(id).is_ok_and(|c| allowed.binary_search(&c).is_ok());
    (!ok).then(|| {
        format!(
            "CPU {id} is not one this process may run on (allowed: {})",
            ranges(allowed)
        )
    })
}

/// The value of `--cpu-affinity`: `auto`, `none` or a comma-separated list of CPU ids
/// (`0,2`), checked against the CPUs this process may run on.
pub fn parse_flag(s: &str) -> Result<CpuAffinity, String> {
    match s.trim() {
        "auto" => return Ok(CpuAffinity::Auto),
        "none" => return Ok(CpuAffinity::None),
        _ => {}
    }
    let allowed = allowed();
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let id: u64 = part.trim().parse().map_err(|_| {
            format!(
                "invalid CPU id {:?}: expected `auto`, `none` or CPU ids such as `0,2`",
                part.trim()
            )
        })?;
        if let Some(why) = refuse(id, allowed.as_deref()) {
            return Err(why);
        }
        cpus.push(usize::try_from(id).map_err(|_| format!("CPU {id} is out of range"))?);
    }
    Ok(CpuAffinity::Cpus(cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_like_proc_status() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[0]), "0");
        assert_eq!(ranges(&[0, 1]), "0-1");
        assert_eq!(ranges(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
    }

    #[test]
    fn only_allowed_cpus_may_be_listed() {
        let allowed = [0, 1, 4];
        assert_eq!(refuse(4, Some(&allowed)), None);
        assert_eq!(
            refuse(2, Some(&allowed)).as_deref(),
            Some("CPU 2 is not one this process may run on (allowed: 0-1,4)")
        );
        assert!(refuse(u64::MAX, Some(&allowed)).is_some());
        // An unreadable mask checks nothing (the runtime warns if pinning then fails).
        assert_eq!(refuse(2, None), None);
    }

    #[test]
    fn the_flag_takes_auto_none_or_a_list() {
        assert_eq!(parse_flag("auto"), Ok(CpuAffinity::Auto));
        assert_eq!(parse_flag("none"), Ok(CpuAffinity::None));
        let mine = allowed().unwrap_or_default();
        let first = mine[0];
        assert_eq!(
            parse_flag(&format!("{first}, {first}")),
            Ok(CpuAffinity::Cpus(vec![first, first]))
        );
        assert!(parse_flag("0,x")
            .unwrap_err()
            .contains("invalid CPU id \"x\""));
        assert!(parse_flag("")
            .unwrap_err()
            .contains("expected `auto`, `none` or CPU ids"));
        assert!(parse_flag("100000")
            .unwrap_err()
            .starts_with("CPU 100000 is not one this process may run on (allowed: "));
    }
}
