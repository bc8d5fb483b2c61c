//! `cpu_affinity`: where the worker threads (named `ringway-w<N>`) may run, read from each
//! thread's `/proc/<pid>/task/<tid>/status` (`Cpus_allowed_list`) while the proxy serves a
//! request: pinned one per CPU (`auto`), not pinned (`none`: the process's whole set), or
//! round-robin over an explicit list, from the config or `--cpu-affinity`.

use crate::support;

use std::collections::BTreeMap;

use support::*;

/// `0-3,6` -> [0, 1, 2, 3, 6].
fn parse_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => out.push(part.parse().unwrap()),
        }
    }
    out
}

fn allowed_list(status_path: &str) -> Option<Vec<usize>> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    Some(parse_list(line))
}

/// The CPUs this test (and so the proxy it starts) may run on.
fn own_cpus() -> Vec<usize> {
    allowed_list("/proc/self/status").expect("Cpus_allowed_list of this process")
}

/// Worker id -> the CPUs that worker thread may run on.
fn worker_cpus(proxy: &Proxy) -> BTreeMap<usize, Vec<usize>> {
    let mut out = BTreeMap::new();
    let dir = std::fs::read_dir(format!("/proc/{}/task", proxy.pid())).expect("task dir");
    for task in dir.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(id) = comm.trim().strip_prefix("ringway-w") else {
            continue;
        };
        let status = task.path().join("status");
        if let Some(cpus) = allowed_list(&status.to_string_lossy()) {
            out.insert(id.parse().expect("worker id"), cpus);
        }
    }
    out
}

/// Start the proxy, hold a connection with a request answered, and read the workers' sets.
fn placed(top: &str, args: &[&str]) -> BTreeMap<usize, Vec<usize>> {
    let origin = status_origin();
    let yaml = ConfigBuilder::simple(origin.addr).top(top).yaml();
    let proxy = Proxy::start_args(&yaml, args);
    let mut client = Client::connect(proxy.addr);
    assert_eq!(client.get("a", "/").status(), 200);
    let got = worker_cpus(&proxy);
    assert_eq!(client.get("a", "/").status(), 200);
    drop(client);
    assert_eq!(proxy.stop().code(), Some(0));
    got
}

#[test]
fn runtime_affinity_auto_pins_one_worker_per_cpu() {
    let mine = own_cpus();
    let got = placed("cpu_affinity: auto", &["--workers", "2"]);
    let want: BTreeMap<usize, Vec<usize>> =
        (0..2).map(|i| (i, vec![mine[i % mine.len()]])).collect();
    assert_eq!(got, want);
}

#[test]
fn runtime_affinity_none_leaves_workers_unpinned() {
    let mine = own_cpus();
    let got = placed("cpu_affinity: none", &["--workers", "2"]);
    let want: BTreeMap<usize, Vec<usize>> = (0..2).map(|i| (i, mine.clone())).collect();
    assert_eq!(got, want);
}

#[test]
fn runtime_affinity_list_with_auto_workers_runs_one_worker_per_listed_cpu() {
    // The process's CPUs in reverse (at most two): worker 0 on the highest.
    let list: Vec<usize> = own_cpus().into_iter().rev().take(2).collect();
    let ids: Vec<String> = list.iter().map(ToString::to_string).collect();
    let got = placed(
        &format!("workers: auto\ncpu_affinity: [{}]", ids.join(", ")),
        &[],
    );
    let want: BTreeMap<usize, Vec<usize>> = list
        .iter()
        .enumerate()
        .map(|(i, &c)| (i, vec![c]))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn runtime_affinity_flag_overrides_the_config_round_robin() {
    let mine = own_cpus();
    let first = mine[0].to_string();
    // Three workers over a one-CPU list: all on it.
    let got = placed(
        "cpu_affinity: none",
        &["--workers", "3", "--cpu-affinity", &first],
    );
    let want: BTreeMap<usize, Vec<usize>> = (0..3).map(|i| (i, vec![mine[0]])).collect();
    assert_eq!(got, want);
}

#[test]
fn runtime_affinity_refuses_cpus_the_process_may_not_use() {
    let origin = status_origin();
    let allowed = own_cpus();
    // From the config: exit 1, the element and its line.
    let yaml = ConfigBuilder::simple(origin.addr)
        .top("workers: 1\ncpu_affinity: [4096]")
        .yaml();
    let path = write_config(&yaml);
    let out = run_ringway(
        &["run", "-c", path.to_str().unwrap()],
        std::time::Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cpu_affinity[0]: CPU 4096 is not one this process may run on (allowed: ")
            && out.stderr.contains(") (line 2)"),
        "{}",
        out.stderr
    );
    // From the flag: refused before anything starts.
    let out = run_ringway(
        &[
            "run",
            "-c",
            path.to_str().unwrap(),
            "--cpu-affinity",
            "4096",
        ],
        std::time::Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--cpu-affinity")
            && out
                .stderr
                .contains("CPU 4096 is not one this process may run on"),
        "{}",
        out.stderr
    );
    assert!(!allowed.contains(&4096));
}
