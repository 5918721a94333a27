//! Domain types that more than one service uses, with their wire conversions.
//!
//! Each type is parsed from its proto enum at the boundary; the `*_UNSPECIFIED` wire value is
//! never a domain value, so code past the adapter cannot hold one.
#![forbid(unsafe_code)]

use std::fmt;

use tierline_proto::common;

#[doc(hidden)]
pub use serde as __serde;

/// Declares a domain enum with the names it is stored under (database columns, configuration,
/// JSON), so `as_str`, `from_db` and serde always agree.
#[macro_export]
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            $crate::__serde::Serialize, $crate::__serde::Deserialize,
        )]
        // A string path cannot use `$crate`; every user depends on tierline-types by this name.
        #[serde(crate = "tierline_types::__serde")]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Reads a stored name.
            pub fn from_db(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

/// A customer's ABC tier; A is the most valuable. Written "A", "B", "C" in configuration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Tier {
    /// The few most valuable customers.
    A,
    /// Everyone between.
    B,
    /// The many customers who together make a small share of revenue.
    C,
}

impl Tier {
    /// All tiers, most valuable first.
    pub const ALL: [Tier; 3] = [Tier::A, Tier::B, Tier::C];

    /// The stored name: "A", "B" or "C".
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::A => "A",
            Tier::B => "B",
            Tier::C => "C",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<Tier> {
        match s {
            "A" => Some(Tier::A),
            "B" => Some(Tier::B),
            "C" => Some(Tier::C),
            _ => None,
        }
    }

    /// Reads a wire value; `None` for unspecified, an error for an unknown number.
    pub fn from_wire(raw: i32) -> Result<Option<Tier>, String> {
        match common::Tier::try_from(raw) {
            Ok(common::Tier::Unspecified) => Ok(None),
            Ok(common::Tier::A) => Ok(Some(Tier::A)),
            Ok(common::Tier::B) => Ok(Some(Tier::B)),
            Ok(common::Tier::C) => Ok(Some(Tier::C)),
            Err(_) => Err(format!("{raw} is not a tier")),
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> common::Tier {
        match self {
            Tier::A => common::Tier::A,
            Tier::B => common::Tier::B,
            Tier::C => common::Tier::C,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The channel a contact came in or went out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Phone, usually through the IVR.
    Voice,
    /// Web form or portal.
    Web,
    /// Email.
    Email,
    /// Chat or messaging.
    Chat,
    /// In person.
    Counter,
    /// Another system.
    Api,
}

impl Channel {
    /// Every channel, in wire order.
    pub const ALL: [Channel; 6] = [
        Channel::Voice,
        Channel::Web,
        Channel::Email,
        Channel::Chat,
        Channel::Counter,
        Channel::Api,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Web => "web",
            Channel::Email => "email",
            Channel::Chat => "chat",
            Channel::Counter => "counter",
            Channel::Api => "api",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<Channel> {
        Some(match s {
            "voice" => Channel::Voice,
            "web" => Channel::Web,
            "email" => Channel::Email,
            "chat" => Channel::Chat,
            "counter" => Channel::Counter,
            "api" => Channel::Api,
            _ => return None,
        })
    }

    /// Reads a wire value; `None` for unspecified, an error for an unknown number.
    pub fn from_wire(raw: i32) -> Result<Option<Channel>, String> {
        Ok(Some(match common::Channel::try_from(raw) {
            Ok(common::Channel::Unspecified) => return Ok(None),
            Ok(common::Channel::Voice) => Channel::Voice,
            Ok(common::Channel::Web) => Channel::Web,
            Ok(common::Channel::Email) => Channel::Email,
            Ok(common::Channel::Chat) => Channel::Chat,
            Ok(common::Channel::Counter) => Channel::Counter,
            Ok(common::Channel::Api) => Channel::Api,
            Err(_) => return Err(format!("{raw} is not a channel")),
        }))
    }

    /// The wire value.
    pub fn to_wire(self) -> common::Channel {
        match self {
            Channel::Voice => common::Channel::Voice,
            Channel::Web => common::Channel::Web,
            Channel::Email => common::Channel::Email,
            Channel::Chat => common::Channel::Chat,
            Channel::Counter => common::Channel::Counter,
            Channel::Api => common::Channel::Api,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_round_trip_and_unknown_numbers_are_errors() {
        for tier in Tier::ALL {
            assert_eq!(Tier::from_db(tier.as_str()), Some(tier));
            assert_eq!(Tier::from_wire(tier.to_wire() as i32), Ok(Some(tier)));
        }
        assert_eq!(Tier::from_wire(0), Ok(None));
        assert!(Tier::from_wire(42).is_err());
        assert!(Tier::A < Tier::C, "A sorts first");
    }

    #[test]
    fn channels_round_trip() {
        for ch in [
            Channel::Voice,
            Channel::Web,
            Channel::Email,
            Channel::Chat,
            Channel::Counter,
            Channel::Api,
        ] {
            assert_eq!(Channel::from_db(ch.as_str()), Some(ch));
            assert_eq!(Channel::from_wire(ch.to_wire() as i32), Ok(Some(ch)));
        }
        assert!(Channel::from_wire(-3).is_err());
    }
}
