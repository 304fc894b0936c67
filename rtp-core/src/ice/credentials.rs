//! The lite agent's short-term credentials across an ICE restart
//! (RFC 8445 §9, §7.3 with RFC 8489 §9.1.3): the current set and, until a
//! check proves the peer has switched, the set before the last restart, so
//! media keeps flowing while the new offer/answer propagates.

use crate::stun::StunMessage;

/// One set of short-term credentials.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) local_ufrag: String,
    pub(crate) local_pwd: String,
    /// `None` accepts any peer ufrag (signaling did not give one).
    pub(crate) remote_ufrag: Option<String>,
}

impl Credentials {
    /// Whether a USERNAME split into (`local`, `remote`) names these.
    fn names(&self, local: &[u8], remote: &[u8]) -> bool {
        local == self.local_ufrag.as_bytes()
            && self
                .remote_ufrag
                .as_ref()
                .is_none_or(|r| r.as_bytes() == remote)
    }
}

/// Which set authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Current,
    Previous,
}

/// Why a request did not authenticate (both are 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No set's ufrags match USERNAME.
    Username,
    /// A set's ufrags match but its password does not verify.
    Integrity,
}

/// Current credentials plus, after a restart, the previous ones.
#[derive(Debug, Clone)]
pub(crate) struct CredentialSet {
    current: Credentials,
    previous: Credentials,
    /// Whether `previous` is still accepted (a restart is in progress).
    previous_active: bool,
}

impl CredentialSet {
    pub(crate) fn new(current: Credentials) -> Self {
        Self {
            current,
            previous: Credentials::default(),
            previous_active: false,
        }
    }

    /// Makes `fresh` current. Restarting again before the first restart
    /// completed replaces the unproven set and keeps the old working one.
    pub(crate) fn restart(&mut self, fresh: Credentials) {
        if self.previous_active {
            self.current = fresh;
        } else {
            self.previous = std::mem::replace(&mut self.current, fresh);
            self.previous_active = true;
        }
    }

    /// Finds the set whose ufrags USERNAME names and whose password verifies
    /// MESSAGE-INTEGRITY. Both are tried because a restart may change only
    /// the password.
    pub(crate) fn authenticate(
        &self,
        msg: &StunMessage<'_>,
        local: &[u8],
        remote: &[u8],
    ) -> Result<Which, AuthFailure> {
        let mut named = false;
        for which in [Which::Current, Which::Previous] {
            if which == Which::Previous && !self.previous_active {
                continue;
            }
            let c = self.get(which);
            if !c.names(local, remote) {
                continue;
            }
            named = true;
            if msg.verify_integrity(c.local_pwd.as_bytes()) {
                return Ok(which);
            }
        }
        Err(if named {
            AuthFailure::Integrity
        } else {
            AuthFailure::Username
        })
    }

    /// Records a successful check with `which`; returns true when it was the
    /// first with the current set after a restart, retiring the previous set.
    pub(crate) fn confirm(&mut self, which: Which) -> bool {
        let completes = which == Which::Current && self.previous_active;
        if completes {
            self.previous_active = false;
        }
        completes
    }

    /// The password (MESSAGE-INTEGRITY key) of `which`.
    pub(crate) fn pwd(&self, which: Which) -> &[u8] {
        self.get(which).local_pwd.as_bytes()
    }

    pub(crate) fn local_ufrag(&self) -> &str {
        &self.current.local_ufrag
    }

    fn get(&self, which: Which) -> &Credentials {
        match which {
            Which::Current => &self.current,
            Which::Previous => &self.previous,
        }
    }
}
