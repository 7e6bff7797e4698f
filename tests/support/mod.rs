//! Shared fixtures of the end-to-end tests, one module per concern. Every server here is real
//! and listens on loopback.
#![allow(dead_code, unused_imports)] // each test crate uses a part of the fixtures

pub mod bridge;
pub mod browser;
pub mod cimd;
pub mod example;
pub mod hostile;
pub mod resource;
pub mod rmcp_host;
pub mod stub_a3;

/// The example server's composition, exactly as `cargo run --example server` serves it.
#[path = "../../examples/server/app.rs"]
pub mod server;

pub use bridge::*;
pub use browser::*;
pub use cimd::*;
pub use example::*;
pub use hostile::*;
pub use rmcp_host::*;
pub use stub_a3::*;
