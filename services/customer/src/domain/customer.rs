//! The customer profile and the rules that hold between its fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tierline_runtime::Violations;
use tierline_types::Tier;
use tierline_types::stored_enum;
use time::OffsetDateTime;
use uuid::Uuid;

use super::identity::Identity;
use super::timeline::SatisfactionSummary;

/// Id of a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(pub Uuid);

impl CustomerId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        CustomerId(Uuid::now_v7())
    }
}

impl Default for CustomerId {
    fn default() -> Self {
        CustomerId::new()
    }
}

impl std::fmt::Display for CustomerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

stored_enum!(
    /// Person or organisation.
    CustomerKind { Individual = "individual", Organization = "organization" }
);
stored_enum!(
    /// How the customer buys: directly, or indirectly through a partner.
    Relationship { Direct = "direct", ChannelPartner = "channel_partner", Reseller = "reseller" }
);
stored_enum!(
    /// Credit standing.
    CreditStanding { Unknown = "unknown", Good = "good", Watch = "watch", Poor = "poor" }
);
stored_enum!(
    /// Lifecycle stage.
    LifecycleStage {
        Prospect = "prospect",
        New = "new",
        Active = "active",
        Loyal = "loyal",
        Churned = "churned",
    }
);

/// What a significant date is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignificantDateKind {
    /// Birthday.
    Birthday,
    /// An anniversary.
    Anniversary,
    /// Anything else.
    Other,
}

/// A date that matters for customer care; the year may be unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignificantDate {
    /// What the date is.
    pub kind: SignificantDateKind,
    /// A label.
    pub label: String,
    /// Year, if known.
    pub year: Option<i32>,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day, valid for the month.
    pub day: u8,
}

impl SignificantDate {
    /// Checks the day is valid for the month (and year, when given).
    pub fn check(year: Option<i32>, month: i32, day: i32) -> Result<(u8, u8), String> {
        let month_u8 = u8::try_from(month).map_err(|_| "month must be 1 to 12".to_string())?;
        let m = time::Month::try_from(month_u8).map_err(|_| "month must be 1 to 12".to_string())?;
        // With no year, 29 February is allowed (a leap-year birthday).
        let year_for_check = year.unwrap_or(2000);
        let max = m.length(year_for_check);
        match u8::try_from(day) {
            Ok(d) if d >= 1 && d <= max => Ok((month_u8, d)),
            _ => Err(format!("day must be 1 to {max} for month {month}")),
        }
    }
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostalAddress {
    /// Street lines.
    pub lines: Vec<String>,
    /// City or town.
    pub locality: String,
    /// State, province, county.
    pub administrative_area: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 region, or empty.
    pub region_code: String,
}

/// Lifetime value in millionths of the reporting currency; never negative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LifetimeValue(i64);

impl LifetimeValue {
    /// Zero.
    pub const ZERO: LifetimeValue = LifetimeValue(0);

    /// From micro-units; negative amounts are refused.
    pub fn from_micros(micros: i64) -> Result<Self, String> {
        if micros < 0 {
            Err("must not be negative".into())
        } else {
            Ok(LifetimeValue(micros))
        }
    }

    /// From a wire amount (units + nanos); nanos must be whole micro-units.
    pub fn from_units_nanos(units: i64, nanos: i32) -> Result<Self, String> {
        if !(-999_999_999..=999_999_999).contains(&nanos) {
            return Err("nanos must be between -999,999,999 and 999,999,999".into());
        }
        if nanos % 1000 != 0 {
            return Err(
                "nanos must be a multiple of 1,000 (amounts are kept to millionths)".into(),
            );
        }
        let micros = units
            .checked_mul(1_000_000)
            .and_then(|m| m.checked_add(i64::from(nanos / 1000)))
            .ok_or_else(|| "amount too large".to_string())?;
        LifetimeValue::from_micros(micros)
    }

    /// Micro-units.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// (units, nanos) for the wire.
    pub fn units_nanos(self) -> (i64, i32) {
        (self.0 / 1_000_000, ((self.0 % 1_000_000) * 1000) as i32)
    }
}

/// The fields of a profile that clients edit.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Full name.
    pub display_name: String,
    /// Preferred form of address.
    pub form_of_address: String,
    /// Person or organisation.
    pub kind: CustomerKind,
    /// Direct or indirect.
    pub relationship: Relationship,
    /// Sector or segment.
    pub segment: String,
    /// Postal address.
    pub postal_address: Option<PostalAddress>,
    /// Birthdays, anniversaries.
    pub significant_dates: Vec<SignificantDate>,
    /// Stated preferences.
    pub preferences: Vec<String>,
    /// Agents' observations.
    pub observations: String,
    /// Free domain attributes.
    pub attributes: BTreeMap<String, String>,
    /// Credit standing.
    pub credit_standing: CreditStanding,
    /// Lifecycle stage.
    pub lifecycle_stage: LifecycleStage,
    /// Why the customer churned; set exactly when churned.
    pub churn_reason: String,
    /// Named account manager (agent id).
    pub account_manager_id: Option<String>,
    /// Served by the key-account team.
    pub key_account: bool,
    /// Flagged abusive or unreasonable.
    pub unreasonable: bool,
    /// Why flagged; set when flagged.
    pub unreasonable_note: String,
    /// Lifetime value, the input to tiering.
    pub lifetime_value: LifetimeValue,
}

impl Profile {
    /// A minimal prospect, as created for an unknown caller.
    pub fn prospect(display_name: String) -> Self {
        Profile {
            display_name,
            form_of_address: String::new(),
            kind: CustomerKind::Individual,
            relationship: Relationship::Direct,
            segment: String::new(),
            postal_address: None,
            significant_dates: Vec::new(),
            preferences: Vec::new(),
            observations: String::new(),
            attributes: BTreeMap::new(),
            credit_standing: CreditStanding::Unknown,
            lifecycle_stage: LifecycleStage::Prospect,
            churn_reason: String::new(),
            account_manager_id: None,
            key_account: false,
            unreasonable: false,
            unreasonable_note: String::new(),
            lifetime_value: LifetimeValue::ZERO,
        }
    }

    /// The rules between fields; each field is valid on its own by construction.
    pub fn check(&self) -> Result<(), Violations> {
        let mut v = Violations::new();
        let churned = self.lifecycle_stage == LifecycleStage::Churned;
        if churned && self.churn_reason.is_empty() {
            v.add("churn_reason", "required when lifecycle_stage is churned");
        }
        if !churned && !self.churn_reason.is_empty() {
            v.add(
                "churn_reason",
                "only allowed when lifecycle_stage is churned",
            );
        }
        if self.unreasonable && self.unreasonable_note.is_empty() {
            v.add("unreasonable_note", "required when unreasonable is set");
        }
        v.finish(|| ())
    }
}

/// A change to some fields of a profile: each `Some` replaces that field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfilePatch {
    #[allow(missing_docs)]
    pub display_name: Option<String>,
    #[allow(missing_docs)]
    pub form_of_address: Option<String>,
    #[allow(missing_docs)]
    pub kind: Option<CustomerKind>,
    #[allow(missing_docs)]
    pub relationship: Option<Relationship>,
    #[allow(missing_docs)]
    pub segment: Option<String>,
    #[allow(missing_docs)]
    pub postal_address: Option<Option<PostalAddress>>,
    #[allow(missing_docs)]
    pub significant_dates: Option<Vec<SignificantDate>>,
    #[allow(missing_docs)]
    pub preferences: Option<Vec<String>>,
    #[allow(missing_docs)]
    pub observations: Option<String>,
    #[allow(missing_docs)]
    pub attributes: Option<BTreeMap<String, String>>,
    #[allow(missing_docs)]
    pub credit_standing: Option<CreditStanding>,
    #[allow(missing_docs)]
    pub lifecycle_stage: Option<LifecycleStage>,
    #[allow(missing_docs)]
    pub churn_reason: Option<String>,
    #[allow(missing_docs)]
    pub account_manager_id: Option<Option<String>>,
    #[allow(missing_docs)]
    pub key_account: Option<bool>,
    #[allow(missing_docs)]
    pub unreasonable: Option<bool>,
    #[allow(missing_docs)]
    pub unreasonable_note: Option<String>,
    #[allow(missing_docs)]
    pub lifetime_value: Option<LifetimeValue>,
}

impl ProfilePatch {
    /// The profile with the patch applied, if the result obeys the profile's rules.
    pub fn apply(self, profile: &Profile) -> Result<Profile, Violations> {
        let mut p = profile.clone();
        macro_rules! set {
            ($($field:ident),+) => { $(if let Some(value) = self.$field { p.$field = value; })+ };
        }
        set!(
            display_name,
            form_of_address,
            kind,
            relationship,
            segment,
            postal_address,
            significant_dates,
            preferences,
            observations,
            attributes,
            credit_standing,
            lifecycle_stage,
            churn_reason,
            account_manager_id,
            key_account,
            unreasonable,
            unreasonable_note,
            lifetime_value
        );
        // Leaving churned clears the reason; clearing the flag clears its note.
        if p.lifecycle_stage != LifecycleStage::Churned
            && profile.lifecycle_stage == LifecycleStage::Churned
        {
            p.churn_reason.clear();
        }
        if !p.unreasonable && profile.unreasonable {
            p.unreasonable_note.clear();
        }
        p.check()?;
        Ok(p)
    }
}

/// A manual tier with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierOverride {
    /// The tier set by hand.
    pub tier: Tier,
    /// Why.
    pub reason: String,
    /// When it was set.
    pub set_at: OffsetDateTime,
}

/// A stored customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// Id.
    pub id: CustomerId,
    /// The editable fields.
    pub profile: Profile,
    /// Contact identities.
    pub identities: Vec<Identity>,
    /// Tier from the last recomputation.
    pub computed_tier: Tier,
    /// Manual tier, if set.
    pub tier_override: Option<TierOverride>,
    /// Running satisfaction figures.
    pub satisfaction: SatisfactionSummary,
    /// Set on a merged profile: the survivor.
    pub merged_into: Option<CustomerId>,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
    /// Soft-deleted.
    pub deleted_at: Option<OffsetDateTime>,
}

impl Customer {
    /// The tier in force: the override if set, else the computed tier.
    pub fn tier(&self) -> Tier {
        self.tier_override
            .as_ref()
            .map_or(self.computed_tier, |o| o.tier)
    }
}

/// Filters of a customer list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// Tier in force.
    pub tier: Option<Tier>,
    /// Segment.
    pub segment: Option<String>,
    /// Lifecycle stage.
    pub lifecycle_stage: Option<LifecycleStage>,
    /// Account manager.
    pub account_manager_id: Option<String>,
    /// Only key accounts.
    pub key_accounts_only: bool,
    /// Include soft-deleted customers.
    pub show_deleted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churned_needs_a_reason_and_leaving_churned_clears_it() {
        let p = Profile::prospect("Ada".into());
        let bad = ProfilePatch {
            lifecycle_stage: Some(LifecycleStage::Churned),
            ..Default::default()
        }
        .apply(&p)
        .expect_err("needs reason");
        assert_eq!(bad.as_slice()[0].field, "churn_reason");

        let churned = ProfilePatch {
            lifecycle_stage: Some(LifecycleStage::Churned),
            churn_reason: Some("competitor price".into()),
            ..Default::default()
        }
        .apply(&p)
        .expect("valid");
        let back = ProfilePatch {
            lifecycle_stage: Some(LifecycleStage::Active),
            ..Default::default()
        }
        .apply(&churned)
        .expect("valid");
        assert!(back.churn_reason.is_empty());
    }

    #[test]
    fn unreasonable_flag_needs_a_note() {
        let p = Profile::prospect("Ada".into());
        let err = ProfilePatch {
            unreasonable: Some(true),
            ..Default::default()
        }
        .apply(&p)
        .expect_err("needs note");
        assert_eq!(err.as_slice()[0].field, "unreasonable_note");
    }

    #[test]
    fn a_patch_changes_only_its_fields() {
        let p = Profile::prospect("Ada".into());
        let q = ProfilePatch {
            segment: Some("retail".into()),
            ..Default::default()
        }
        .apply(&p)
        .expect("valid");
        assert_eq!(q.segment, "retail");
        assert_eq!(q.display_name, "Ada");
    }

    #[test]
    fn override_wins_over_computed_tier() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut c = Customer {
            id: CustomerId::new(),
            profile: Profile::prospect("Ada".into()),
            identities: vec![],
            computed_tier: Tier::C,
            tier_override: None,
            satisfaction: SatisfactionSummary::default(),
            merged_into: None,
            version: 1,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        assert_eq!(c.tier(), Tier::C);
        c.tier_override = Some(TierOverride {
            tier: Tier::A,
            reason: "board member".into(),
            set_at: now,
        });
        assert_eq!(c.tier(), Tier::A);
    }

    #[test]
    fn money_is_kept_to_millionths() {
        assert_eq!(
            LifetimeValue::from_units_nanos(12, 340_000_000).map(|v| v.micros()),
            Ok(12_340_000)
        );
        assert!(LifetimeValue::from_units_nanos(1, 1).is_err());
        assert!(LifetimeValue::from_units_nanos(-1, 0).is_err());
        assert!(LifetimeValue::from_units_nanos(i64::MAX, 0).is_err());
        assert_eq!(
            LifetimeValue::from_micros(12_340_000).map(|v| v.units_nanos()),
            Ok((12, 340_000_000))
        );
    }

    #[test]
    fn significant_dates_must_exist() {
        assert!(SignificantDate::check(None, 2, 29).is_ok());
        assert!(SignificantDate::check(Some(2023), 2, 29).is_err());
        assert!(SignificantDate::check(None, 13, 1).is_err());
        assert!(SignificantDate::check(None, 4, 31).is_err());
        assert!(SignificantDate::check(None, 1, 0).is_err());
    }
}
