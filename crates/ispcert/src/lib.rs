//! ispcert: a Kubernetes operator that buys, installs and keeps alive commercial TLS certificates
//! through the ispmanager billing API (BILLmanager).
//!
//! The billing simulator (`ispcert-sim`) and the control-plane harness (`ispcert-testbed`) are
//! crates of their own: nothing of them ships in the operator.

#![forbid(unsafe_code)]

pub mod billing;
pub mod catalog;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod pki;
pub mod text;
pub mod time;
