//! Bounded field types: the limits of the signaling messages live in the types, so a message
//! that deserializes is within them, whatever the handler does next.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A string of at most `MAX` bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    /// `s`, if it fits.
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        (s.len() <= MAX).then_some(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MAX: usize> std::ops::Deref for Text<MAX> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 64 {
            let mut end = 64;
            while !self.0.is_char_boundary(end) {
                end -= 1;
            }
            write!(f, "{:?}…({} bytes)", &self.0[..end], self.0.len())
        } else {
            fmt::Debug::fmt(&self.0, f)
        }
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for Text<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() > MAX {
            return Err(de::Error::custom(format!("longer than {MAX} bytes")));
        }
        Ok(Self(s))
    }
}

impl<const MAX: usize> Serialize for Text<MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Any JSON value of at most `MAX` bytes when written out (opaque payloads the server relays:
/// `input.event`, `ping.t`, `req`, ICE candidates).
#[derive(Clone, PartialEq, Default)]
pub struct Json<const MAX: usize>(serde_json::Value);

impl<const MAX: usize> Json<MAX> {
    pub fn value(&self) -> &serde_json::Value {
        &self.0
    }

    pub fn into_value(self) -> serde_json::Value {
        self.0
    }

    /// `v`, if it fits.
    pub fn new(v: serde_json::Value) -> Option<Self> {
        (json_len(&v) <= MAX).then_some(Self(v))
    }
}

impl<const MAX: usize> fmt::Debug for Json<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json({} bytes)", json_len(&self.0))
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for Json<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Self::new(v).ok_or_else(|| de::Error::custom(format!("longer than {MAX} bytes")))
    }
}

impl<const MAX: usize> Serialize for Json<MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A list of at most `MAX` entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct List<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> List<T, MAX> {
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// `v`, if it fits.
    pub fn new(v: Vec<T>) -> Option<Self> {
        (v.len() <= MAX).then_some(Self(v))
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for List<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T, const MAX: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const MAX: usize> de::Visitor<'de> for Visit<T, MAX> {
            type Value = List<T, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX} entries")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if out.len() == MAX {
                        return Err(de::Error::custom(format!("more than {MAX} entries")));
                    }
                    out.push(item);
                }
                Ok(List(out))
            }
        }
        d.deserialize_seq(Visit::<T, MAX>(std::marker::PhantomData))
    }
}

impl<T: Serialize, const MAX: usize> Serialize for List<T, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A layer index, 0..=2 (three spatial or temporal layers at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LayerIndex(u8);

impl LayerIndex {
    pub const MAX: u8 = 2;

    pub fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for LayerIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        u8::try_from(v)
            .ok()
            .filter(|v| *v <= Self::MAX)
            .map(LayerIndex)
            .ok_or_else(|| de::Error::custom(format!("expected 0..{}", Self::MAX)))
    }
}

/// Bytes `v` takes written out as JSON.
fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}
