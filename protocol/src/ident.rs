//! The one charset rule for identifiers that end up in topics, URLs and
//! database keys: [`crate::DeviceId`] and [`crate::GatewayId`] both use it,
//! so a name one side accepts is never refused by the other.

/// Longest identifier accepted.
pub(crate) const MAX_LEN: usize = 64;

/// Checks `input` against the rule: 1 to 64 ASCII characters from
/// `A-Z a-z 0-9 - _`, starting with a letter or digit. Returns the rule that
/// was broken, in words.
pub(crate) fn check(input: &str) -> Result<(), &'static str> {
    if input.is_empty() {
        return Err("empty");
    }
    if input.len() > MAX_LEN {
        return Err("longer than 64 characters");
    }
    if !input
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("contains a character outside A-Z a-z 0-9 - _");
    }
    if !input.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("does not start with a letter or digit");
    }
    Ok(())
}

/// Defines a checked identifier type: a `String` newtype that only
/// [`check`] can build, with `parse`, `as_str`, `Display`, `FromStr`,
/// `AsRef<str>` and serde as a plain string (checked again when read).
/// `$variant` is the [`crate::ProtocolError`] variant its refusals use.
macro_rules! checked_id {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Parse `input` as a ", $what, ".")]
            ///
            /// # Errors
            #[doc = concat!("[`crate::ProtocolError::", stringify!($variant), "`] naming the rule that was broken.")]
            pub fn parse(input: &str) -> Result<Self, crate::error::ProtocolError> {
                crate::ident::check(input).map_err(|reason| crate::error::ProtocolError::$variant {
                    input: crate::error::truncate(input, 80),
                    reason,
                })?;
                Ok(Self(input.to_owned()))
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::error::ProtocolError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use checked_id;
