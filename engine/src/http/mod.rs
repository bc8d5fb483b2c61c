//! HTTP: the HTTP/1 codec ([`h1`]), the connection manager that turns a connection's bytes
//! into streams ([`conn_manager`]), the stream itself ([`stream`]: filters, the route's action,
//! local replies), the HTTP filter chain on a worker ([`filter_chain`]), the forwarding policy
//! ([`policy`]), the router's upstream exchange ([`forward`]), and body forwarding ([`body`]).

pub mod body;
pub mod conn_manager;
pub mod filter_chain;
pub mod forward;
pub mod h1;
pub mod policy;
pub mod stream;
