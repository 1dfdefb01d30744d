//! End-to-end tests: the operator on a real kube-apiserver and etcd (one control plane for this
//! test binary, a namespace per test) against the billing simulator over real HTTP.

mod bad_input;
mod cli;
mod deletion;
mod healing;
#[path = "../common/log_capture.rs"]
mod log_capture;
mod modes;
mod no_secrets;
#[path = "../common/orders.rs"]
mod orders;
mod replicas;
mod support;
