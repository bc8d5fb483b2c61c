//! Smoke test of the support harness: a request through the real proxy to a real origin.
use crate::support;
use support::*;

#[test]
fn http1_get_through_proxy_reaches_origin() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let r = get(proxy.addr, "example.com", "/echo");
    assert_eq!(r.status(), 200, "{r:?}");
    let echo: serde_json::Value = serde_json::from_slice(&r.body).expect("echo json");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["headers"]["host"], "example.com");
    assert!(proxy.stop().success());
    assert_eq!(origin.stop(), 1);
}
