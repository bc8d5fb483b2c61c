//! The `header_mutation` filter (Envoy's `envoy.filters.http.header_mutation`): adds, replaces
//! and removes headers on the request and the response (and their trailers), with values that
//! may hold `%VAR%` commands.
//!
//! ```text
//! parse ─▶ HeaderMutationConfig { request, response, request_trailers, response_trailers: Mutations }
//! request head  ─▶ request.apply_request(head, ctx.vars)    (before later filters and the router)
//! response head ─▶ response.apply_response(head, ctx.request, ctx.vars)
//! trailers      ─▶ *_trailers.apply(trailers, ctx.vars)
//! ```
//!
//! The reusable part, [`Mutations`] with [`HeaderValueOptionSpec`], also serves the engine's
//! route-level `request_headers_to_add` / `..._to_remove` keys. The factory declares only the
//! hooks whose list is non-empty, so an unused direction costs nothing. Per request: one filter
//! box holding an `Rc`; no other state.

mod config;
mod mutations;
#[cfg(test)]
mod tests;

use std::{rc::Rc, sync::Arc};

use crate::{
    filter::{Ctx, FilterConfig, FilterFactory, HeadersStatus, Hooks, HttpFilter, WorkerInfo},
    registry::{decode, ParseResult},
    stream::{HeaderMap, RequestHead, ResponseHead},
    DataStatus,
};

pub use config::{HeaderMutationEntry, HeaderMutationSpec, MutationsSpec};
pub use mutations::{AppendAction, HeaderValueOptionSpec, HeaderValueSpec, Mutations};

/// Validate a `header_mutation` config.
pub fn parse(v: &serde_json::Value) -> ParseResult {
    let spec = decode::<HeaderMutationSpec>(v)?;
    let v = spec.validate()?;
    Ok(Arc::new(HeaderMutationConfig {
        lists: Lists {
            request: v.request,
            response: v.response,
            request_trailers: v.request_trailers,
            response_trailers: v.response_trailers,
        },
    }))
}

/// The four lists of edits.
#[derive(Debug, Clone)]
struct Lists {
    request: Mutations,
    response: Mutations,
    request_trailers: Mutations,
    response_trailers: Mutations,
}

/// The validated config: immutable, shared by every worker.
#[derive(Debug)]
pub struct HeaderMutationConfig {
    lists: Lists,
}

impl FilterConfig for HeaderMutationConfig {
    fn name(&self) -> &'static str {
        "header_mutation"
    }

    fn worker(&self, _w: WorkerInfo) -> Rc<dyn FilterFactory> {
        Rc::new(Factory {
            lists: Rc::new(self.lists.clone()),
        })
    }
}

/// A worker's factory, with its own copy of the lists (made once per worker and config
/// snapshot): each request's handle is a plain `Rc` count.
struct Factory {
    lists: Rc<Lists>,
}

impl FilterFactory for Factory {
    fn hooks(&self) -> Hooks {
        let l = &self.lists;
        Hooks {
            request_headers: !l.request.is_empty(),
            request_trailers: !l.request_trailers.is_empty(),
            response_headers: !l.response.is_empty(),
            response_trailers: !l.response_trailers.is_empty(),
            ..Hooks::default()
        }
    }

    fn create(&self) -> Box<dyn HttpFilter> {
        Box::new(HeaderMutation {
            lists: Rc::clone(&self.lists),
        })
    }
}

/// One request's filter.
struct HeaderMutation {
    lists: Rc<Lists>,
}

impl HttpFilter for HeaderMutation {
    fn on_request_headers(
        &mut self,
        head: &mut RequestHead,
        _end_stream: bool,
        cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        self.lists.request.apply_request(head, cx.vars);
        HeadersStatus::Continue
    }

    fn on_request_trailers(&mut self, trailers: &mut HeaderMap, cx: &mut Ctx<'_>) -> DataStatus {
        self.lists.request_trailers.apply(trailers, cx.vars);
        DataStatus::Continue
    }

    fn on_response_headers(
        &mut self,
        head: &mut ResponseHead,
        _end_stream: bool,
        cx: &mut Ctx<'_>,
    ) -> HeadersStatus {
        self.lists
            .response
            .apply_response(head, cx.request, cx.vars);
        HeadersStatus::Continue
    }

    fn on_response_trailers(&mut self, trailers: &mut HeaderMap, cx: &mut Ctx<'_>) -> DataStatus {
        self.lists.response_trailers.apply(trailers, cx.vars);
        DataStatus::Continue
    }

    fn recycle(&mut self) -> bool {
        true
    }
}
