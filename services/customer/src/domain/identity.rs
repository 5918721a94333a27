//! Contact identities, parsed and normalised at the boundary: a value of these types is valid.

use std::fmt;
use std::str::FromStr;

/// Which kind of identity a value is. Stored as the lower-case names below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// A phone number, E.164.
    Phone,
    /// An email address, lower case.
    Email,
    /// An external or membership id.
    ExternalId,
}

impl IdentityKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Phone => "phone",
            IdentityKind::Email => "email",
            IdentityKind::ExternalId => "external_id",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "phone" => Some(IdentityKind::Phone),
            "email" => Some(IdentityKind::Email),
            "external_id" => Some(IdentityKind::ExternalId),
            _ => None,
        }
    }
}

/// An ISO 3166-1 alpha-2 region that phone numbers can be read in ("GB").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionCode(phonenumber::country::Id);

impl RegionCode {
    /// Parses a region code; it must be one the phone-number metadata knows.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let upper = raw.trim().to_ascii_uppercase();
        if upper.len() != 2 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("{raw:?} is not a two-letter region code"));
        }
        phonenumber::country::Id::from_str(&upper)
            .map(RegionCode)
            .map_err(|_| format!("{raw:?} is not a known region code"))
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// A valid phone number in E.164 form (`+442079460018`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number written internationally, or locally in `region`.
    pub fn parse(raw: &str, region: RegionCode) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("required".into());
        }
        if trimmed.chars().count() > 64 {
            return Err("at most 64 characters".into());
        }
        let number = phonenumber::parse(Some(region.0), trimmed)
            .map_err(|_| format!("{trimmed:?} is not a phone number (read in region {region})"))?;
        if !number.is_valid() {
            return Err(format!(
                "{trimmed:?} is not a valid phone number (read in region {region})"
            ));
        }
        Ok(PhoneNumber(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    /// The E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, lower-cased so comparisons ignore case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("required".into());
        }
        if trimmed.len() > 254 {
            return Err("at most 254 characters".into());
        }
        let lower = trimmed.to_lowercase();
        let parsed = email_address::EmailAddress::parse_with_options(
            &lower,
            email_address::Options::default().without_display_text(),
        )
        .map_err(|e| format!("{trimmed:?} is not an email address: {e}"))?;
        Ok(EmailAddress(parsed.as_str().to_owned()))
    }

    /// The lower-case address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An external or membership id: trimmed, 1 to 256 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalId(String);

impl ExternalId {
    /// Parses an id.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("required".into());
        }
        if trimmed.chars().count() > 256 {
            return Err("at most 256 characters".into());
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(ExternalId(trimmed.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A normalised identity value of a known kind: the key lookups use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentityValue {
    /// A phone number.
    Phone(PhoneNumber),
    /// An email address.
    Email(EmailAddress),
    /// An external id.
    ExternalId(ExternalId),
}

impl IdentityValue {
    /// Parses `raw` as an identity of `kind`; local phone numbers are read in `region`.
    pub fn parse(kind: IdentityKind, raw: &str, region: RegionCode) -> Result<Self, String> {
        match kind {
            IdentityKind::Phone => PhoneNumber::parse(raw, region).map(IdentityValue::Phone),
            IdentityKind::Email => EmailAddress::parse(raw).map(IdentityValue::Email),
            IdentityKind::ExternalId => ExternalId::parse(raw).map(IdentityValue::ExternalId),
        }
    }

    /// Rebuilds a value stored by this service, which was normalised when it was written.
    pub fn from_stored(kind: IdentityKind, value: String) -> Self {
        match kind {
            IdentityKind::Phone => IdentityValue::Phone(PhoneNumber(value)),
            IdentityKind::Email => IdentityValue::Email(EmailAddress(value)),
            IdentityKind::ExternalId => IdentityValue::ExternalId(ExternalId(value)),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> IdentityKind {
        match self {
            IdentityValue::Phone(_) => IdentityKind::Phone,
            IdentityValue::Email(_) => IdentityKind::Email,
            IdentityValue::ExternalId(_) => IdentityKind::ExternalId,
        }
    }

    /// The normalised value.
    pub fn as_str(&self) -> &str {
        match self {
            IdentityValue::Phone(p) => p.as_str(),
            IdentityValue::Email(e) => e.as_str(),
            IdentityValue::ExternalId(x) => x.as_str(),
        }
    }
}

/// An identity as a customer holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The normalised value.
    pub value: IdentityValue,
    /// A label ("mobile"), at most 50 characters.
    pub label: String,
    /// Whether several customers may hold it.
    pub shared: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gb() -> RegionCode {
        RegionCode::parse("GB").expect("GB")
    }

    #[test]
    fn local_and_international_forms_normalise_to_the_same_e164() {
        let local = PhoneNumber::parse("020 7946 0018", gb()).expect("local");
        let intl = PhoneNumber::parse("+44 20 7946 0018", gb()).expect("intl");
        let dotted = PhoneNumber::parse("(020) 7946-0018", gb()).expect("punctuated");
        assert_eq!(local.as_str(), "+442079460018");
        assert_eq!(local, intl);
        assert_eq!(local, dotted);
    }

    #[test]
    fn region_decides_how_a_local_number_is_read() {
        let de = RegionCode::parse("de").expect("DE");
        let berlin = PhoneNumber::parse("030 901820", de).expect("berlin");
        assert_eq!(berlin.as_str(), "+4930901820");
        // An explicit country code wins over the region.
        let us = PhoneNumber::parse("+1 415 555 2671", de).expect("us");
        assert_eq!(us.as_str(), "+14155552671");
    }

    #[test]
    fn garbage_and_impossible_numbers_are_rejected() {
        assert!(PhoneNumber::parse("", gb()).is_err());
        assert!(PhoneNumber::parse("not a number", gb()).is_err());
        assert!(PhoneNumber::parse("12", gb()).is_err());
        assert!(PhoneNumber::parse(&"9".repeat(100), gb()).is_err());
    }

    #[test]
    fn region_codes_must_be_known() {
        assert!(RegionCode::parse("GB").is_ok());
        assert!(RegionCode::parse("gb").is_ok());
        assert!(RegionCode::parse("XX").is_err());
        assert!(RegionCode::parse("GBR").is_err());
        assert!(RegionCode::parse("").is_err());
    }

    #[test]
    fn emails_compare_case_insensitively() {
        let a = EmailAddress::parse(" Ada.Lovelace@Example.COM ").expect("email");
        assert_eq!(a.as_str(), "ada.lovelace@example.com");
        assert!(EmailAddress::parse("no-at-sign").is_err());
        assert!(EmailAddress::parse("Ada <ada@example.com>").is_err());
    }

    #[test]
    fn external_ids_are_trimmed_and_bounded() {
        assert_eq!(ExternalId::parse(" M-1 ").expect("id").as_str(), "M-1");
        assert!(ExternalId::parse("  ").is_err());
        assert!(ExternalId::parse(&"x".repeat(257)).is_err());
        assert!(ExternalId::parse("a\u{7}b").is_err());
    }

    #[test]
    fn kinds_round_trip_through_their_stored_names() {
        for kind in [
            IdentityKind::Phone,
            IdentityKind::Email,
            IdentityKind::ExternalId,
        ] {
            assert_eq!(IdentityKind::from_db(kind.as_str()), Some(kind));
        }
        assert_eq!(IdentityKind::from_db("fax"), None);
    }
}
