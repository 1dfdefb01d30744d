//! One control plane per test binary, started by whichever test asks first.

use tokio::sync::OnceCell;

use super::{ControlPlane, Options, TestbedError};

static SHARED: OnceCell<Result<ControlPlane, TestbedError>> = OnceCell::const_new();

/// The control plane shared by all tests of this test binary, started on first use with the
/// options `options` makes (the first caller's options win: a test binary should ask through one
/// helper of its own). Each test should work in a namespace of its own
/// ([`ControlPlane::create_namespace`]) and make its own client.
///
/// A failed start is remembered: every test then fails at once with the same error instead of
/// trying again. It is never dropped; its processes die with the test process (parent-death
/// signal) and its work dir is removed at exit.
pub async fn shared(options: impl FnOnce() -> Options) -> Result<&'static ControlPlane, &'static TestbedError> {
    SHARED.get_or_init(|| ControlPlane::start(options())).await.as_ref()
}
