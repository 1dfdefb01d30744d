//! ispcert: a Kubernetes operator that buys, installs and keeps alive commercial TLS certificates
//! through the ispmanager billing API (BILLmanager).

pub mod catalog;
pub mod sim;
