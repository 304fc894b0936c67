//! Sluice control daemon (see issue: control).
