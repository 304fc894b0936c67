//! Sluice dataplane (see issue: the dataplane).

pub mod proto;
