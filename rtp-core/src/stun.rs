//! STUN (being written)
