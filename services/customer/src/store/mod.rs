//! Storage of customers. [`CustomerStore`] is what the API needs from storage; [`pg`] keeps it
//! in PostgreSQL (the system of record), [`sqlite`] in one SQLite file (the single-process dev
//! mode). Both are held to the same behaviour by `tests/store.rs`.

mod common;
pub mod pg;
pub mod sqlite;

use std::future::Future;

use tierline_types::Tier;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{
    Customer, CustomerFilter, CustomerId, Identity, IdentityValue, Interaction, NewInteraction,
    NewSatisfaction, Profile, ProfilePatch, SatisfactionRecord, TieringPolicy,
};
use crate::error::Result;

pub use pg::{MIGRATOR, PgStore};
pub use sqlite::{SQLITE_MIGRATOR, SqliteStore};

/// A customer to create.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    /// Editable fields.
    pub profile: Profile,
    /// Identities to claim for it.
    pub identities: Vec<Identity>,
}

/// Outcome of resolving an identity.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The customer who holds the identity, or the prospect created.
    pub customer: Customer,
    /// Whether this call created it.
    pub created: bool,
    /// Other holders of a shared identity.
    pub others: Vec<CustomerId>,
}

/// What a tier recomputation found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct RecomputeReport {
    /// Live customers considered.
    pub evaluated: i64,
    /// Computed tiers changed (or, in a dry run, that would change).
    pub changed: i64,
    /// Customers per tier in force afterwards, A, B, C.
    pub per_tier: [i64; 3],
    /// Customers whose override differs from their computed tier.
    pub overridden: i64,
    /// Sum of lifetime values, micro-units.
    pub total_value_micros: i64,
}

/// A merge of two profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    /// Id.
    pub id: Uuid,
    /// The profile that remains.
    pub survivor: CustomerId,
    /// The profile merged away.
    pub merged: CustomerId,
    /// Why.
    pub reason: String,
    /// Identities moved.
    pub identities_moved: i64,
    /// Interactions moved.
    pub interactions_moved: i64,
    /// Satisfaction records moved.
    pub satisfaction_moved: i64,
    /// When.
    pub created_at: OffsetDateTime,
    /// When undone.
    pub undone_at: Option<OffsetDateTime>,
}

/// A page of results and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T, C> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last.
    pub next: Option<C>,
}

/// Cursor of timeline lists: (time, id) of the last item.
pub type TimeCursor = (OffsetDateTime, Uuid);

/// Everything the customer service needs from storage. Every method is one transaction.
pub trait CustomerStore: Send + Sync + 'static {
    /// Creates a customer with its identities; the same idempotency key returns the first.
    fn create(
        &self,
        new: NewCustomer,
        idempotency_key: Option<String>,
    ) -> impl Future<Output = Result<Customer>> + Send;

    /// A customer, following merges to the survivor.
    fn get(&self, id: CustomerId) -> impl Future<Output = Result<Customer>> + Send;

    /// Applies a patch if the version matches.
    fn update(
        &self,
        id: CustomerId,
        patch: ProfilePatch,
        expected_version: Option<i64>,
    ) -> impl Future<Output = Result<Customer>> + Send;

    /// A page of customers in id order after `after`.
    fn list(
        &self,
        filter: CustomerFilter,
        after: Option<Uuid>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<Customer, Uuid>>> + Send;

    /// Soft-deletes a customer and releases its identities.
    fn delete(
        &self,
        id: CustomerId,
        expected_version: Option<i64>,
    ) -> impl Future<Output = Result<Customer>> + Send;

    /// Restores a soft-deleted customer if its identities are still free.
    fn undelete(&self, id: CustomerId) -> impl Future<Output = Result<Customer>> + Send;

    /// Claims an identity for a customer.
    fn add_identity(
        &self,
        id: CustomerId,
        identity: Identity,
    ) -> impl Future<Output = Result<Customer>> + Send;

    /// Removes an identity from a customer.
    fn remove_identity(
        &self,
        id: CustomerId,
        value: IdentityValue,
    ) -> impl Future<Output = Result<Customer>> + Send;

    /// Live customers holding an identity, most recently updated first.
    fn lookup(&self, value: &IdentityValue) -> impl Future<Output = Result<Vec<Customer>>> + Send;

    /// Looks up, or creates a prospect holding the identity; race-free.
    fn resolve(
        &self,
        value: IdentityValue,
        display_name: String,
    ) -> impl Future<Output = Result<Resolved>> + Send;

    /// Records an interaction on the (surviving) customer's timeline.
    fn record_interaction(
        &self,
        id: CustomerId,
        new: NewInteraction,
        idempotency_key: Option<String>,
    ) -> impl Future<Output = Result<Interaction>> + Send;

    /// A page of interactions, newest first.
    fn list_interactions(
        &self,
        id: CustomerId,
        after: Option<TimeCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<Interaction, TimeCursor>>> + Send;

    /// Records a satisfaction measurement and updates the running figures.
    fn record_satisfaction(
        &self,
        id: CustomerId,
        new: NewSatisfaction,
        idempotency_key: Option<String>,
    ) -> impl Future<Output = Result<SatisfactionRecord>> + Send;

    /// A page of satisfaction records, newest first.
    fn list_satisfaction(
        &self,
        id: CustomerId,
        after: Option<TimeCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<SatisfactionRecord, TimeCursor>>> + Send;

    /// Sets (`Some`) or clears (`None`) the manual tier.
    fn set_tier_override(
        &self,
        id: CustomerId,
        tier_override: Option<(Tier, String)>,
        expected_version: Option<i64>,
    ) -> impl Future<Output = Result<Customer>> + Send;

    /// Recomputes every live customer's tier.
    fn recompute_tiers(
        &self,
        policy: TieringPolicy,
        dry_run: bool,
    ) -> impl Future<Output = Result<RecomputeReport>> + Send;

    /// Merges `merged` into `survivor`.
    fn merge(
        &self,
        survivor: CustomerId,
        merged: CustomerId,
        reason: String,
    ) -> impl Future<Output = Result<Merge>> + Send;

    /// Undoes a merge.
    fn undo_merge(&self, merge_id: Uuid) -> impl Future<Output = Result<Merge>> + Send;
}
