use super::*;

#[test]
fn method_paths_are_package_service_and_method() {
    let head = |p: &[u8]| RequestHead::new(b"POST", "http", b"a", p);
    assert_eq!(method_path(&head(b"/pkg.Svc/Call")), Some("/pkg.Svc/Call"));
    assert_eq!(
        method_path(&head(b"/pkg.Svc/Call?x=1")),
        Some("/pkg.Svc/Call")
    );
    assert_eq!(method_path(&head(b"/pkg.Svc/")), None);
    assert_eq!(method_path(&head(b"/a/b/c")), None);
    assert_eq!(method_path(&head(b"/")), None);
}

#[test]
fn the_allow_list_and_all_methods_exclude_each_other() {
    let v = serde_json::json!({"stats_for_all_methods": true,
        "individual_method_stats_allowlist": {"services": [{"name": "s", "method_names": ["m"]}]}});
    assert!(parse(&v).is_err());
    assert!(parse(&serde_json::json!({})).is_ok());
    assert!(parse(&serde_json::json!({"nope": 1})).is_err());
}
