//! What both stores share: turning stored values into domain types, and the rules (and error
//! messages) of which change a stored customer accepts. Kept in one place so that
//! [`super::PgStore`] and [`super::SqliteStore`] cannot drift apart in what clients observe.

use std::collections::BTreeMap;

use tierline_types::Tier;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Resolved;
use crate::domain::{
    CreditStanding, Customer, CustomerId, CustomerKind, Identity, IdentityKind, IdentityValue,
    LifecycleStage, LifetimeValue, PostalAddress, Profile, Relationship, SatisfactionSummary,
    SignificantDate, TierOverride,
};
use crate::error::{Error, Result};

/// Stored data that does not parse.
pub(crate) fn corrupt(what: &str, value: &str) -> Error {
    Error::Corrupt(format!("{what} {value:?}"))
}

/// A stored tier name.
pub(crate) fn tier_from_db(s: &str) -> Result<Tier> {
    Tier::from_db(s).ok_or_else(|| corrupt("tier", s))
}

/// One identity as the customer reads aggregate it into a JSON array.
#[derive(serde::Deserialize)]
pub(crate) struct IdentityJson {
    pub kind: String,
    pub value: String,
    pub label: String,
    pub shared: bool,
}

/// A customer as stored, with the database's encodings (JSON, text arrays, integer times)
/// already decoded; [`CustomerRecord::into_domain`] checks the enumerations.
pub(crate) struct CustomerRecord {
    pub id: Uuid,
    pub display_name: String,
    pub form_of_address: String,
    pub kind: String,
    pub relationship: String,
    pub segment: String,
    pub postal_address: Option<PostalAddress>,
    pub significant_dates: Vec<SignificantDate>,
    pub preferences: Vec<String>,
    pub observations: String,
    pub attributes: BTreeMap<String, String>,
    pub credit_standing: String,
    pub lifecycle_stage: String,
    pub churn_reason: String,
    pub account_manager_id: Option<String>,
    pub key_account: bool,
    pub unreasonable: bool,
    pub unreasonable_note: String,
    pub lifetime_value_micros: i64,
    pub computed_tier: String,
    pub override_tier: Option<String>,
    pub override_reason: Option<String>,
    pub override_set_at: Option<OffsetDateTime>,
    pub sat_count: i64,
    pub sat_sum_c: f64,
    pub sat_sum_expected: f64,
    pub sat_sum_perceived: f64,
    pub sat_last_c: Option<f64>,
    pub sat_last_at: Option<OffsetDateTime>,
    pub merged_into: Option<Uuid>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
    pub identities: Vec<IdentityJson>,
}

impl CustomerRecord {
    /// The domain customer, or [`Error::Corrupt`] naming the first value that does not parse.
    pub(crate) fn into_domain(self) -> Result<Customer> {
        let identities = self
            .identities
            .into_iter()
            .map(|i| {
                let kind = IdentityKind::from_db(&i.kind)
                    .ok_or_else(|| corrupt("identity kind", &i.kind))?;
                Ok(Identity {
                    value: IdentityValue::from_stored(kind, i.value),
                    label: i.label,
                    shared: i.shared,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tier_override = match (self.override_tier, self.override_reason) {
            (Some(tier), Some(reason)) => Some(TierOverride {
                tier: tier_from_db(&tier)?,
                reason,
                set_at: self.override_set_at.unwrap_or(self.updated_at),
            }),
            _ => None,
        };
        Ok(Customer {
            id: CustomerId(self.id),
            profile: Profile {
                display_name: self.display_name,
                form_of_address: self.form_of_address,
                kind: CustomerKind::from_db(&self.kind)
                    .ok_or_else(|| corrupt("kind", &self.kind))?,
                relationship: Relationship::from_db(&self.relationship)
                    .ok_or_else(|| corrupt("relationship", &self.relationship))?,
                segment: self.segment,
                postal_address: self.postal_address,
                significant_dates: self.significant_dates,
                preferences: self.preferences,
                observations: self.observations,
                attributes: self.attributes,
                credit_standing: CreditStanding::from_db(&self.credit_standing)
                    .ok_or_else(|| corrupt("credit standing", &self.credit_standing))?,
                lifecycle_stage: LifecycleStage::from_db(&self.lifecycle_stage)
                    .ok_or_else(|| corrupt("lifecycle stage", &self.lifecycle_stage))?,
                churn_reason: self.churn_reason,
                account_manager_id: self.account_manager_id,
                key_account: self.key_account,
                unreasonable: self.unreasonable,
                unreasonable_note: self.unreasonable_note,
                lifetime_value: LifetimeValue::from_micros(self.lifetime_value_micros)
                    .map_err(Error::Corrupt)?,
            },
            identities,
            computed_tier: tier_from_db(&self.computed_tier)?,
            tier_override,
            satisfaction: SatisfactionSummary {
                count: self.sat_count,
                sum_c: self.sat_sum_c,
                sum_expected: self.sat_sum_expected,
                sum_perceived: self.sat_sum_perceived,
                last_c: self.sat_last_c,
                last_at: self.sat_last_at,
            },
            merged_into: self.merged_into.map(CustomerId),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
        })
    }
}

/// Refuses changes to merged or deleted profiles and stale versions, given the stored
/// `version`, whether the customer is `deleted`, and whom it was `merged_into`.
pub(crate) fn check_writable(
    id: CustomerId,
    version: i64,
    deleted: bool,
    merged_into: Option<Uuid>,
    expected_version: Option<i64>,
    allow_deleted: bool,
) -> Result<()> {
    if let Some(survivor) = merged_into {
        return Err(Error::FailedPrecondition {
            reason: "CUSTOMER_MERGED",
            subject: format!("customers/{id}"),
            message: format!("customer {id} was merged into {survivor}; change the survivor"),
        });
    }
    if deleted && !allow_deleted {
        return Err(Error::FailedPrecondition {
            reason: "CUSTOMER_DELETED",
            subject: format!("customers/{id}"),
            message: format!("customer {id} is deleted; undelete it first"),
        });
    }
    if let Some(expected) = expected_version
        && expected != version
    {
        return Err(Error::StaleVersion {
            id: id.to_string(),
            expected,
            actual: version,
        });
    }
    Ok(())
}

/// The answer to a resolve from the live holders of an identity, most recently updated first;
/// `None` when nobody holds it.
pub(crate) fn resolved_from(mut found: Vec<Customer>) -> Option<Resolved> {
    if found.is_empty() {
        return None;
    }
    let customer = found.remove(0);
    Some(Resolved {
        customer,
        created: false,
        others: found.into_iter().map(|c| c.id).collect(),
    })
}

/// `identity` is held by another customer in a way that excludes this claim.
pub(crate) fn identity_taken(value: &IdentityValue) -> Error {
    Error::IdentityTaken {
        kind: value.kind().as_str(),
        value: value.as_str().to_owned(),
    }
}

/// Whether a claim of an identity, `shared` or not, by `customer` conflicts with its current
/// live holders, given as (customer, shared).
///
/// A holder is what a lookup lists: a row not released, of a customer neither deleted nor
/// merged. A merged profile's tombstone keeps the (shared) identities its survivor already held,
/// but they are inert: they count for no claim, lookup or resolve until the merge is undone, and
/// then only if they pass this same rule again (see [`check_restorable`]).
pub(crate) fn claim_conflicts(customer: Uuid, shared: bool, holders: &[(Uuid, bool)]) -> bool {
    let mut others = holders.iter().filter(|(id, _)| *id != customer).peekable();
    others.peek().is_some() && (!shared || others.any(|(_, other_shared)| !other_shared))
}

/// The customer does not hold the identity it asked to remove.
pub(crate) fn identity_not_found(id: CustomerId, value: &IdentityValue) -> Error {
    Error::NotFound {
        what: "identity",
        id: format!(
            "{} {} of customer {id}",
            value.kind().as_str(),
            value.as_str()
        ),
    }
}

/// Undelete of a customer who is not deleted.
pub(crate) fn customer_not_deleted(id: CustomerId) -> Error {
    Error::FailedPrecondition {
        reason: "CUSTOMER_NOT_DELETED",
        subject: format!("customers/{id}"),
        message: format!("customer {id} is not deleted"),
    }
}

/// Undelete while another customer has claimed one of the deleted customer's identities.
pub(crate) fn identity_claimed(id: CustomerId, kind: &str, value: &str) -> Error {
    Error::FailedPrecondition {
        reason: "IDENTITY_CLAIMED",
        subject: format!("customers/{id}"),
        message: format!(
            "{kind} {value} of customer {id} now belongs to another customer; remove it from one of them first"
        ),
    }
}

/// Why identities stored on a customer are about to count as its holdings again.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Restoring {
    /// An undelete: the deleted customer's released identities.
    Undelete,
    /// An undo of this merge: the identities left inert on the merged profile's tombstone.
    UndoMerge(Uuid),
}

/// Refuses to restore the identity `kind` `value` (`shared` or not) to `customer` when that
/// claim would conflict with its current live `holders`, given as (customer, shared): a live
/// customer has claimed it meanwhile, and restoring it would leave two owners.
pub(crate) fn check_restorable(
    restoring: Restoring,
    customer: CustomerId,
    kind: &str,
    value: &str,
    shared: bool,
    holders: &[(Uuid, bool)],
) -> Result<()> {
    if !claim_conflicts(customer.0, shared, holders) {
        return Ok(());
    }
    Err(match restoring {
        Restoring::Undelete => identity_claimed(customer, kind, value),
        Restoring::UndoMerge(merge_id) => Error::FailedPrecondition {
            reason: "IDENTITY_CLAIMED",
            subject: format!("merges/{merge_id}"),
            message: format!(
                "{kind} {value} of customer {customer} now belongs to another customer; \
                 remove it from that customer before undoing the merge"
            ),
        },
    })
}

/// A timeline write to a deleted customer.
pub(crate) fn timeline_of_deleted(id: CustomerId) -> Error {
    Error::FailedPrecondition {
        reason: "CUSTOMER_DELETED",
        subject: format!("customers/{id}"),
        message: format!("customer {id} is deleted"),
    }
}

/// An idempotency key replayed for another customer than the one it was first used for.
pub(crate) fn idempotency_key_reused(asked: CustomerId) -> Error {
    Error::FailedPrecondition {
        reason: "IDEMPOTENCY_KEY_REUSED",
        subject: format!("customers/{asked}"),
        message: "idempotency_key was already used for another customer".into(),
    }
}

/// No merge with this id.
pub(crate) fn merge_not_found(merge_id: Uuid) -> Error {
    Error::NotFound {
        what: "merge",
        id: merge_id.to_string(),
    }
}

/// Undo of a merge that was already undone.
pub(crate) fn merge_already_undone(merge_id: Uuid) -> Error {
    Error::FailedPrecondition {
        reason: "MERGE_ALREADY_UNDONE",
        subject: format!("merges/{merge_id}"),
        message: format!("merge {merge_id} was already undone"),
    }
}

/// Refuses to undo a merge whose survivor has since been merged on or deleted.
pub(crate) fn check_survivor_unchanged(
    merge_id: Uuid,
    survivor: CustomerId,
    survivor_merged_into: Option<Uuid>,
    survivor_deleted: bool,
) -> Result<()> {
    let subject = format!("merges/{merge_id}");
    if let Some(next) = survivor_merged_into {
        return Err(Error::FailedPrecondition {
            reason: "SURVIVOR_MERGED_SINCE",
            subject,
            message: format!(
                "customer {survivor} has since been merged into {next}; undo that merge first"
            ),
        });
    }
    if survivor_deleted {
        // Its identities are released and may have been claimed by others since.
        return Err(Error::FailedPrecondition {
            reason: "SURVIVOR_DELETED",
            subject,
            message: format!(
                "customer {survivor} has since been deleted; undelete it before undoing the merge"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_conflicts_unless_every_holder_and_the_claim_are_shared() {
        let me = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        assert!(!claim_conflicts(me, false, &[]));
        assert!(!claim_conflicts(me, false, &[(me, true)]), "my own row");
        assert!(claim_conflicts(me, false, &[(other, true)]));
        assert!(claim_conflicts(me, true, &[(other, false)]));
        assert!(!claim_conflicts(me, true, &[(other, true), (me, false)]));
    }

    #[test]
    fn a_restore_is_refused_as_a_claim_would_be_with_the_reason_of_its_operation() {
        let me = CustomerId(Uuid::from_u128(1));
        let other = Uuid::from_u128(2);
        let merge = Uuid::from_u128(3);
        let phone = "+442079460900";
        for restoring in [Restoring::Undelete, Restoring::UndoMerge(merge)] {
            assert!(check_restorable(restoring, me, "phone", phone, true, &[]).is_ok());
            assert!(
                check_restorable(restoring, me, "phone", phone, true, &[(other, true)]).is_ok()
            );
            assert!(
                check_restorable(restoring, me, "phone", phone, false, &[(me.0, true)]).is_ok()
            );
        }
        let refused = check_restorable(
            Restoring::Undelete,
            me,
            "phone",
            phone,
            true,
            &[(other, false)],
        );
        assert!(
            matches!(&refused, Err(Error::FailedPrecondition { reason: "IDENTITY_CLAIMED", subject, .. })
                if *subject == format!("customers/{me}")),
            "{refused:?}"
        );
        let refused = check_restorable(
            Restoring::UndoMerge(merge),
            me,
            "phone",
            phone,
            false,
            &[(other, true)],
        );
        assert!(
            matches!(&refused, Err(Error::FailedPrecondition { reason: "IDENTITY_CLAIMED", subject, .. })
                if *subject == format!("merges/{merge}")),
            "{refused:?}"
        );
    }
}
