//! ispcert: a Kubernetes operator that buys, installs and keeps alive commercial TLS certificates
//! through the ispmanager billing API (BILLmanager).

pub mod billing;
pub mod catalog;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod pki;
pub mod sim;
pub mod testbed;
pub mod text;
pub mod time;
