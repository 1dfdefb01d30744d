//! End-to-end tests: the operator on a real kube-apiserver and etcd (one control plane for this
//! test binary, a namespace per test) against the billing simulator over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod bad_input;
mod chaos;
mod chart;
mod cli;
mod deletion;
mod healing;
mod lifecycle;
mod metrics;
mod modes;
mod money;
mod no_secrets;
mod replicas;
mod support;
