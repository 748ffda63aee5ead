//! The one integration-test binary of `meetinity-auth-server`: the server
//! over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth_flows;
mod backup;
mod bad_input;
mod basics;
#[path = "../../../meetinity-auth/tests/integration/fake_idp.rs"]
mod fake_idp;
mod oidc_flows;
mod ops;
mod scale_out;
#[path = "../../../meetinity-auth/tests/integration/smtp_sink.rs"]
mod smtp_sink;
mod support;
mod users;
