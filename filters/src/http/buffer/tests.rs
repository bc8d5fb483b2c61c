use bytes::Bytes;
use serde_json::json;

use crate::{
    filter::{DataStatus, FilterConfig, Hooks, WorkerInfo},
    registry::PathSeg,
    testing::{ctx, TestRuntime, TestVars},
    FilterState,
};

fn config(v: serde_json::Value) -> std::sync::Arc<dyn FilterConfig> {
    super::parse(&v).unwrap()
}

fn rq_buffered(c: &dyn FilterConfig) -> u64 {
    c.stats()
        .into_iter()
        .find(|(n, _)| n == "buffer.rq_buffered")
        .unwrap()
        .1
}

#[test]
fn declares_the_limit_and_the_data_hook_only() {
    let c = config(json!({"max_request_bytes": 1_048_576}));
    assert_eq!(c.name(), "buffer");
    let f = c.worker(WorkerInfo { id: 0, count: 2 });
    assert_eq!(
        f.hooks(),
        Hooks {
            buffer_request_body: Some(1_048_576),
            request_data: true,
            ..Hooks::default()
        }
    );
    // Registered under both names.
    assert!(crate::registry::parse(
        "envoy.filters.http.buffer",
        &json!({"max_request_bytes": 5})
    )
    .is_ok());
}

#[test]
fn counts_the_bodies_it_sees_on_every_worker() {
    let c = config(json!({"max_request_bytes": 10}));
    let rt = TestRuntime::default();
    let vars = TestVars::default();
    let mut state = FilterState::default();
    for worker in 0..2 {
        let factory = c.worker(WorkerInfo {
            id: worker,
            count: 2,
        });
        let mut f = factory.create();
        let mut cx = ctx(&rt, &vars, &mut state, None);
        let mut body = Bytes::from_static(b"0123456789");
        assert!(matches!(
            f.on_request_data(&mut body, true, &mut cx),
            DataStatus::Continue
        ));
        assert_eq!(
            body,
            Bytes::from_static(b"0123456789"),
            "the body is not changed"
        );
    }
    assert_eq!(rq_buffered(&*c), 2);
    // A piece that does not end the body is not a buffered request.
    let factory = c.worker(WorkerInfo { id: 0, count: 1 });
    let mut f = factory.create();
    let mut cx = ctx(&rt, &vars, &mut state, None);
    let _ = f.on_request_data(&mut Bytes::from_static(b"ab"), false, &mut cx);
    assert_eq!(rq_buffered(&*c), 2);
}

#[test]
fn config_errors() {
    for (v, words) in [
        (json!({}), "required"),
        (json!({"max_request_bytes": 0}), "above 0"),
        (json!({"max_request_bytes": 5_000_000_000u64}), "above"),
        (json!({"max_request_bytes": -1}), "invalid"),
        (json!({"max_request_bytes": "1MB"}), "invalid type"),
    ] {
        let e = super::parse(&v).unwrap_err();
        assert_eq!(e.len(), 1, "{v}");
        assert_eq!(e[0].path, [PathSeg::Key("max_request_bytes".into())], "{v}");
        assert!(e[0].message.contains(words), "{v}: {}", e[0].message);
    }
    let e = super::parse(&json!({"max_request_bytes": 1, "max_request_time": "1s"})).unwrap_err();
    assert_eq!(e[0].path, [PathSeg::Key("max_request_time".into())]);
}
