//! HTTP: the HTTP/1 codec ([`h1`]), the connection manager that runs requests through routing
//! to an upstream ([`conn_manager`]), and body forwarding ([`body`]).

pub mod body;
pub mod conn_manager;
pub mod h1;
pub mod stream_info;
