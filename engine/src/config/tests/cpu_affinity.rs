//! `cpu_affinity`: `auto`, `none` or a list of CPU ids, each of which must be a CPU this process
//! may run on (the error names the element and its line).

use super::{assert_error, assert_errors, ok, BASE};
use crate::config::{cpus, CpuAffinity};

/// A CPU id no machine this runs on lets the process use (beyond CPU_SETSIZE).
const NOT_MINE: u64 = 4096;

fn allowed() -> Vec<usize> {
    cpus::allowed().unwrap_or_default()
}

#[test]
fn auto_by_default_or_none() {
    assert_eq!(ok(BASE).cpu_affinity, CpuAffinity::Auto);
    assert_eq!(
        ok(&format!("cpu_affinity: auto\n{BASE}")).cpu_affinity,
        CpuAffinity::Auto
    );
    assert_eq!(
        ok(&format!("cpu_affinity: none\n{BASE}")).cpu_affinity,
        CpuAffinity::None
    );
}

#[test]
fn a_list_of_allowed_cpus_is_kept_in_order() {
    let mine = allowed();
    let list: Vec<usize> = mine.iter().rev().copied().collect();
    let text = format!(
        "workers: auto\ncpu_affinity: [{}]\n{BASE}",
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let c = ok(&text);
    assert_eq!(c.cpu_affinity, CpuAffinity::Cpus(list));
    assert_eq!(c.workers, None, "auto: the runtime counts the list");
    // Block style, one id a line.
    let text = format!("cpu_affinity:\n  - {}\n{BASE}", mine[0]);
    assert_eq!(ok(&text).cpu_affinity, CpuAffinity::Cpus(vec![mine[0]]));
}

#[test]
fn a_cpu_the_process_may_not_use_is_an_error_with_its_line() {
    let mine = allowed();
    let allowed = cpus::ranges(&mine);
    assert_error(
        &format!("cpu_affinity: [{}, {NOT_MINE}]\n{BASE}", mine[0]),
        &format!(
            "cpu_affinity[1]: CPU {NOT_MINE} is not one this process may run on \
             (allowed: {allowed}) (line 1)"
        ),
    );
    // Block style: each bad element on its own line.
    assert_errors(
        &format!(
            "workers: 2\ncpu_affinity:\n  - {NOT_MINE}\n  - {}\n  - 5000\n{BASE}",
            mine[0]
        ),
        &[
            &format!(
                "cpu_affinity[0]: CPU {NOT_MINE} is not one this process may run on \
                 (allowed: {allowed}) (line 3)"
            ),
            &format!(
                "cpu_affinity[2]: CPU 5000 is not one this process may run on \
                 (allowed: {allowed}) (line 5)"
            ),
        ],
    );
}

#[test]
fn bad_values_name_the_field() {
    assert_error(
        &format!("cpu_affinity: []\n{BASE}"),
        "cpu_affinity: empty CPU list: list at least one CPU id, or use `auto` or `none` (line 1)",
    );
    assert_error(
        &format!("cpu_affinity: pinned\n{BASE}"),
        "cpu_affinity: invalid cpu_affinity \"pinned\": expected `auto`, `none` or a list of CPU \
         ids (line 1)",
    );
    assert_error(
        &format!("cpu_affinity: 3\n{BASE}"),
        "cpu_affinity: invalid type: integer `3`, expected `auto`, `none` or a list of CPU ids \
         (line 1)",
    );
    assert_error(
        &format!("cpu_affinity: [0, -1]\n{BASE}"),
        "cpu_affinity[1]: invalid value: integer `-1`, expected a non-negative integer (line 1)",
    );
}
