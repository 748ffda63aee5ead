//! The one integration-test binary of `meetinity-auth-server`: the server
//! over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod basics;
mod support;
