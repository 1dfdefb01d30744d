//! Keys, CSRs and certificate chains.

pub mod chain;
pub mod keys;
