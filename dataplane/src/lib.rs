//! Sluice dataplane (see issue: the dataplane).
