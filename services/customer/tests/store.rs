//! The behaviour of a customer store, one suite for every store. Each test is an `async fn`
//! over any [`CustomerStore`]; `conformance!` runs it on PostgreSQL (`pg::`, a fresh database
//! per test through `#[sqlx::test]`, needs `DATABASE_URL`), on SQLite in memory
//! (`sqlite_memory::`, one connection) and on a SQLite file (`sqlite_file::`, several
//! connections on a multi-threaded runtime, so concurrent calls really contend for the writer).
//!
//! What the gRPC tests check through the wire, this checks at the store: the API adapter adds
//! parsing and errors' wire form, not behaviour.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tierline_customer::domain::{
    CreditStanding, Customer, CustomerFilter, CustomerId, CustomerKind, Direction, Identity,
    IdentityKind, IdentityValue, LifecycleStage, LifetimeValue, NewInteraction, NewSatisfaction,
    PostalAddress, Profile, ProfilePatch, RegionCode, Relationship, Satisfaction, SignificantDate,
    SignificantDateKind, TieringPolicy, classify,
};
use tierline_customer::error::Error;
use tierline_customer::store::{CustomerStore, NewCustomer};
use tierline_runtime::error::{ErrorKind, ServiceError};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use uuid::Uuid;

/// Runs each named test body on every store.
macro_rules! conformance {
    ($($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        mod pg {
            use sqlx::PgPool;
            use tierline_customer::store::PgStore;
            $(
                #[sqlx::test(migrator = "tierline_customer::store::MIGRATOR")]
                $(#[$attr])*
                async fn $name(pool: PgPool) {
                    super::$name(&PgStore::new(pool)).await;
                }
            )+
        }

        mod sqlite_memory {
            use tierline_customer::store::SqliteStore;
            $(
                #[tokio::test]
                $(#[$attr])*
                async fn $name() {
                    let store = SqliteStore::in_memory().await.expect("open in memory");
                    super::$name(&store).await;
                }
            )+
        }

        mod sqlite_file {
            use tierline_customer::store::SqliteStore;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                $(#[$attr])*
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temporary directory");
                    let store = SqliteStore::open(dir.path().join("customer.db"))
                        .await
                        .expect("open a new file");
                    super::$name(&store).await;
                    store.close().await;
                }
            )+
        }
    };
}

conformance!(
    create_reads_back_every_field_and_get_follows_nothing_else,
    create_with_an_idempotency_key_returns_the_first_customer_even_concurrently,
    create_with_a_taken_identity_creates_nothing,
    update_applies_a_patch_and_refuses_stale_versions_and_merged_or_deleted_customers,
    ten_updates_racing_on_one_version_leave_one_winner,
    list_filters_and_pages_every_customer_once_in_creation_order,
    delete_releases_identities_and_undelete_waits_until_they_are_free,
    an_identity_is_owned_by_one_customer_unless_every_holder_shares_it,
    concurrent_claims_of_one_identity_give_one_owner,
    an_unshared_claim_racing_shared_claims_never_leaves_two_holders,
    lookup_lists_live_holders_most_recently_updated_first,
    twenty_concurrent_resolves_of_one_new_identity_create_one_customer,
    interactions_page_newest_first_and_replay_an_idempotency_key,
    satisfaction_keeps_running_figures_on_the_profile,
    tier_override_wins_and_recompute_reports_like_the_rule,
    recompute_agrees_with_the_pure_rule_on_two_hundred_random_customers,
    merge_moves_everything_to_the_survivor_and_undo_moves_back_exactly_that,
    undo_after_other_merges_moves_back_only_its_own_rows,
    merges_refuse_deleted_merged_or_unknown_customers,
    an_identity_left_only_on_a_merged_tombstone_can_be_resolved_again,
    undoing_a_merge_restores_a_tombstones_identities_only_if_nobody_claimed_them_since,
);

// ---- helpers --------------------------------------------------------------------------------

fn gb() -> RegionCode {
    RegionCode::parse("GB").expect("GB")
}

fn phone(raw: &str) -> IdentityValue {
    IdentityValue::parse(IdentityKind::Phone, raw, gb()).expect("a valid phone number")
}

fn email(raw: &str) -> IdentityValue {
    IdentityValue::parse(IdentityKind::Email, raw, gb()).expect("a valid email address")
}

fn holds(value: IdentityValue) -> Identity {
    Identity {
        value,
        label: String::new(),
        shared: false,
    }
}

fn shares(value: IdentityValue) -> Identity {
    Identity {
        value,
        label: String::new(),
        shared: true,
    }
}

fn named(name: &str) -> Profile {
    Profile::prospect(name.to_owned())
}

fn valued(name: &str, micros: i64) -> Profile {
    let mut p = named(name);
    p.lifetime_value = LifetimeValue::from_micros(micros).expect("a valid value");
    p
}

async fn create<S: CustomerStore>(
    store: &S,
    profile: Profile,
    identities: Vec<Identity>,
) -> Customer {
    store
        .create(
            NewCustomer {
                profile,
                identities,
            },
            None,
        )
        .await
        .expect("create")
}

async fn get<S: CustomerStore>(store: &S, id: CustomerId) -> Customer {
    store.get(id).await.expect("get")
}

async fn lookup<S: CustomerStore>(store: &S, value: &IdentityValue) -> Vec<CustomerId> {
    store
        .lookup(value)
        .await
        .expect("lookup")
        .into_iter()
        .map(|c| c.id)
        .collect()
}

async fn list_all<S: CustomerStore>(
    store: &S,
    filter: CustomerFilter,
    limit: u32,
) -> Vec<Customer> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(filter.clone(), after, limit)
            .await
            .expect("list");
        assert!(page.items.len() <= limit as usize);
        assert!(
            !page.items.is_empty() || page.next.is_none(),
            "an empty page with a cursor"
        );
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

fn ids(customers: &[Customer]) -> Vec<CustomerId> {
    customers.iter().map(|c| c.id).collect()
}

fn values(c: &Customer) -> BTreeSet<String> {
    c.identities
        .iter()
        .map(|i| i.value.as_str().to_owned())
        .collect()
}

fn call(summary: &str, occurred_at: Option<OffsetDateTime>) -> NewInteraction {
    NewInteraction {
        channel: Channel::Voice,
        direction: Direction::Inbound,
        summary: summary.to_owned(),
        promised: String::new(),
        given: String::new(),
        ticket_id: None,
        agent_id: None,
        occurred_at,
    }
}

fn measured(expected: f64, perceived: f64) -> NewSatisfaction {
    NewSatisfaction {
        measurement: Satisfaction::new(expected, perceived).expect("a valid measurement"),
        ticket_id: None,
        agent_id: None,
        comment: String::new(),
    }
}

/// The ErrorInfo reason of an error, as clients see it.
#[track_caller]
fn reason<T: std::fmt::Debug>(result: Result<T, Error>) -> &'static str {
    result.expect_err("the call must fail").reason()
}

/// An instant as both stores keep it: microseconds.
fn to_micros(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1000 * 1000)
        .expect("valid nanoseconds")
}

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-12,
        "{actual} is not {expected}"
    );
}

// ---- create and get -------------------------------------------------------------------------

async fn create_reads_back_every_field_and_get_follows_nothing_else<S: CustomerStore>(store: &S) {
    let profile = Profile {
        display_name: "Ada Lovelace".into(),
        form_of_address: "Countess".into(),
        kind: CustomerKind::Organization,
        relationship: Relationship::ChannelPartner,
        segment: "retail".into(),
        postal_address: Some(PostalAddress {
            lines: vec!["12 St James's Square".into(), "Flat 2".into()],
            locality: "London".into(),
            administrative_area: String::new(),
            postal_code: "SW1Y 4JH".into(),
            region_code: "GB".into(),
        }),
        significant_dates: vec![SignificantDate {
            kind: SignificantDateKind::Birthday,
            label: "birthday".into(),
            year: None,
            month: 12,
            day: 10,
        }],
        preferences: vec!["email".into(), "mornings, not afternoons".into()],
        observations: "quotes Byron; \"difficult\" → not really".into(),
        attributes: BTreeMap::from([
            ("membership".into(), "gold".into()),
            ("ñ".into(), "ü".into()),
        ]),
        credit_standing: CreditStanding::Watch,
        lifecycle_stage: LifecycleStage::Churned,
        churn_reason: "competitor price".into(),
        account_manager_id: Some("agent-7".into()),
        key_account: true,
        unreasonable: true,
        unreasonable_note: "shouted".into(),
        lifetime_value: LifetimeValue::from_micros(12_345_678).expect("value"),
    };
    let identities = vec![
        Identity {
            value: phone("020 7946 0018"),
            label: "mobile".into(),
            shared: false,
        },
        Identity {
            value: email("Ada@Example.com"),
            label: String::new(),
            shared: true,
        },
    ];
    let before = to_micros(OffsetDateTime::now_utc());
    let ada = create(store, profile.clone(), identities.clone()).await;
    assert_eq!(ada.profile, profile);
    assert_eq!(ada.identities, identities, "in the order claimed");
    assert_eq!(ada.version, 1);
    assert_eq!(ada.computed_tier, Tier::C);
    assert!(ada.tier_override.is_none());
    assert_eq!(ada.satisfaction.count, 0);
    assert!(ada.merged_into.is_none() && ada.deleted_at.is_none());
    assert_eq!(ada.created_at, ada.updated_at);
    assert!(ada.created_at >= before, "{} < {before}", ada.created_at);
    assert_eq!(get(store, ada.id).await, ada);

    let plain = create(store, named("Bea"), vec![]).await;
    assert_eq!(plain.profile, named("Bea"));
    assert!(plain.identities.is_empty());
    assert!(plain.id.0 > ada.id.0, "ids are time-ordered");

    assert_eq!(reason(store.get(CustomerId::new()).await), "NOT_FOUND");
}

async fn create_with_an_idempotency_key_returns_the_first_customer_even_concurrently<
    S: CustomerStore,
>(
    store: &S,
) {
    let new = |name: &str| NewCustomer {
        profile: named(name),
        identities: vec![],
    };
    let first = store
        .create(new("Ada"), Some("import-42".into()))
        .await
        .expect("create");
    let retry = store
        .create(new("Ada (retry)"), Some("import-42".into()))
        .await
        .expect("retry");
    assert_eq!(retry, first, "the first call's customer, unchanged");
    let other = store
        .create(new("Ada"), Some("import-43".into()))
        .await
        .expect("another key");
    assert_ne!(other.id, first.id);

    let racing =
        (0..10).map(|i| store.create(new(&format!("Racer {i}")), Some("import-44".into())));
    let racing_ids: HashSet<CustomerId> = futures::future::join_all(racing)
        .await
        .into_iter()
        .map(|r| r.expect("concurrent create").id)
        .collect();
    assert_eq!(racing_ids.len(), 1, "{racing_ids:?}");
    assert_eq!(
        list_all(store, CustomerFilter::default(), 100).await.len(),
        3
    );
}

async fn create_with_a_taken_identity_creates_nothing<S: CustomerStore>(store: &S) {
    let switchboard = phone("020 7946 0101");
    create(store, named("Acme Ltd"), vec![holds(switchboard.clone())]).await;
    let refused = store
        .create(
            NewCustomer {
                profile: named("Acme Holdings"),
                identities: vec![holds(email("info@acme.example")), holds(switchboard)],
            },
            Some("acme-holdings".into()),
        )
        .await;
    let err = refused.expect_err("the number is taken");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(err.reason(), "IDENTITY_TAKEN");
    assert!(err.to_string().contains("+442079460101"), "{err}");
    assert!(lookup(store, &email("info@acme.example")).await.is_empty());
    assert_eq!(
        list_all(store, CustomerFilter::default(), 10).await.len(),
        1
    );
    // The key was not used up by the refused call.
    let later = store
        .create(
            NewCustomer {
                profile: named("Acme Holdings"),
                identities: vec![holds(email("info@acme.example"))],
            },
            Some("acme-holdings".into()),
        )
        .await
        .expect("the key is still free");
    assert_eq!(later.profile.display_name, "Acme Holdings");
}

// ---- update ---------------------------------------------------------------------------------

async fn update_applies_a_patch_and_refuses_stale_versions_and_merged_or_deleted_customers<
    S: CustomerStore,
>(
    store: &S,
) {
    let mut p = named("Ada");
    p.observations = "prefers email".into();
    let ada = create(store, p, vec![holds(phone("020 7946 0500"))]).await;
    let updated = store
        .update(
            ada.id,
            ProfilePatch {
                segment: Some("smb".into()),
                observations: Some(String::new()),
                attributes: Some(BTreeMap::from([("k".into(), "v".into())])),
                preferences: Some(vec!["phone".into()]),
                postal_address: Some(Some(PostalAddress::default())),
                ..Default::default()
            },
            Some(1),
        )
        .await
        .expect("update");
    assert_eq!(updated.profile.segment, "smb");
    assert_eq!(updated.profile.observations, "");
    assert_eq!(updated.profile.display_name, "Ada");
    assert_eq!(updated.profile.preferences, ["phone"]);
    assert_eq!(
        updated.profile.postal_address,
        Some(PostalAddress::default())
    );
    assert_eq!(updated.identities, ada.identities);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_at, ada.created_at);
    assert!(updated.updated_at >= ada.updated_at);
    assert_eq!(get(store, ada.id).await, updated);

    let stale = store
        .update(
            ada.id,
            ProfilePatch {
                segment: Some("public-sector".into()),
                ..Default::default()
            },
            Some(1),
        )
        .await
        .expect_err("stale");
    assert!(
        matches!(
            stale,
            Error::StaleVersion {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{stale:?}"
    );
    assert_eq!(get(store, ada.id).await.profile.segment, "smb");

    // The profile's own rules: churned needs a reason.
    let invalid = store
        .update(
            ada.id,
            ProfilePatch {
                lifecycle_stage: Some(LifecycleStage::Churned),
                ..Default::default()
            },
            None,
        )
        .await
        .expect_err("churned without a reason");
    assert_eq!(invalid.kind(), ErrorKind::InvalidArgument);
    assert_eq!(get(store, ada.id).await.version, 2);

    let patch = || ProfilePatch {
        segment: Some("x".into()),
        ..Default::default()
    };
    assert_eq!(
        reason(store.update(CustomerId::new(), patch(), None).await),
        "NOT_FOUND"
    );

    let bea = create(store, named("Bea"), vec![]).await;
    store.delete(bea.id, None).await.expect("delete");
    assert_eq!(
        reason(store.update(bea.id, patch(), None).await),
        "CUSTOMER_DELETED"
    );
    let cleo = create(store, named("Cleo"), vec![]).await;
    store
        .merge(ada.id, cleo.id, "duplicate".into())
        .await
        .expect("merge");
    assert_eq!(
        reason(store.update(cleo.id, patch(), None).await),
        "CUSTOMER_MERGED"
    );
    assert_eq!(
        reason(
            store
                .set_tier_override(cleo.id, Some((Tier::A, "vip".into())), None)
                .await
        ),
        "CUSTOMER_MERGED"
    );
    assert_eq!(
        reason(
            store
                .add_identity(cleo.id, holds(phone("020 7946 0599")))
                .await
        ),
        "CUSTOMER_MERGED"
    );
}

async fn ten_updates_racing_on_one_version_leave_one_winner<S: CustomerStore>(store: &S) {
    let ada = create(store, named("Ada"), vec![]).await;
    let racing = (0..10).map(|i| {
        store.update(
            ada.id,
            ProfilePatch {
                segment: Some(format!("writer-{i}")),
                ..Default::default()
            },
            Some(1),
        )
    });
    let results = futures::future::join_all(racing).await;
    let winners: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|c| c.profile.segment.clone()))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.reason() == "STALE_VERSION"),
        "{results:?}"
    );
    let after = get(store, ada.id).await;
    assert_eq!(
        (after.version, after.profile.segment),
        (2, winners[0].clone())
    );
}

// ---- list -----------------------------------------------------------------------------------

async fn list_filters_and_pages_every_customer_once_in_creation_order<S: CustomerStore>(store: &S) {
    let segments = ["retail", "smb", "public-sector"];
    let stages = [
        LifecycleStage::Prospect,
        LifecycleStage::New,
        LifecycleStage::Active,
        LifecycleStage::Loyal,
    ];
    let mut created = Vec::new();
    for i in 0..25usize {
        let mut p = named(&format!("Customer {i:02}"));
        p.segment = segments[i % 3].into();
        p.lifecycle_stage = stages[i % 4];
        if i % 5 == 0 {
            p.account_manager_id = Some("agent-7".into());
        }
        p.key_account = i % 6 == 0;
        created.push(create(store, p, vec![]).await);
    }
    let all = ids(&created);
    let expect = |pred: &dyn Fn(usize) -> bool| -> Vec<CustomerId> {
        (0..25).filter(|i| pred(*i)).map(|i| all[i]).collect()
    };

    let first = store
        .list(CustomerFilter::default(), None, 10)
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.next, Some(all[9].0), "the cursor is the last id");
    let second = store
        .list(CustomerFilter::default(), first.next, 10)
        .await
        .expect("page 2");
    let third = store
        .list(CustomerFilter::default(), second.next, 10)
        .await
        .expect("page 3");
    assert_eq!(third.items.len(), 5);
    assert!(third.next.is_none(), "the last page has no cursor");
    let paged: Vec<CustomerId> = [first.items, second.items, third.items]
        .iter()
        .flat_map(|p| ids(p))
        .collect();
    assert_eq!(paged, all);
    assert_eq!(
        ids(&list_all(store, CustomerFilter::default(), 5).await),
        all
    );
    assert_eq!(
        ids(&list_all(store, CustomerFilter::default(), 25).await),
        all,
        "a page exactly the size of the rest"
    );

    let filtered = |filter: CustomerFilter, limit: u32| async move {
        ids(&list_all(store, filter, limit).await)
    };
    assert_eq!(
        filtered(
            CustomerFilter {
                segment: Some("smb".into()),
                ..Default::default()
            },
            3
        )
        .await,
        expect(&|i| i % 3 == 1)
    );
    assert_eq!(
        filtered(
            CustomerFilter {
                lifecycle_stage: Some(LifecycleStage::Loyal),
                ..Default::default()
            },
            100
        )
        .await,
        expect(&|i| i % 4 == 3)
    );
    assert_eq!(
        filtered(
            CustomerFilter {
                account_manager_id: Some("agent-7".into()),
                ..Default::default()
            },
            2
        )
        .await,
        expect(&|i| i % 5 == 0)
    );
    assert_eq!(
        filtered(
            CustomerFilter {
                key_accounts_only: true,
                ..Default::default()
            },
            100
        )
        .await,
        expect(&|i| i % 6 == 0)
    );
    assert_eq!(
        filtered(
            CustomerFilter {
                segment: Some("retail".into()),
                key_accounts_only: true,
                lifecycle_stage: Some(LifecycleStage::Prospect),
                ..Default::default()
            },
            100
        )
        .await,
        expect(&|i| i % 3 == 0 && i % 6 == 0 && i % 4 == 0)
    );

    // The tier filter is on the tier in force: overrides count.
    for i in [3, 17] {
        store
            .set_tier_override(all[i], Some((Tier::A, "strategic".into())), None)
            .await
            .expect("override");
    }
    let by_tier = |tier| CustomerFilter {
        tier: Some(tier),
        ..Default::default()
    };
    assert_eq!(
        filtered(by_tier(Tier::A), 100).await,
        expect(&|i| i == 3 || i == 17)
    );
    assert_eq!(
        filtered(by_tier(Tier::C), 7).await,
        expect(&|i| i != 3 && i != 17)
    );
    assert!(filtered(by_tier(Tier::B), 100).await.is_empty());

    // Deleted customers only with show_deleted; merged ones never.
    store.delete(all[0], None).await.expect("delete");
    store
        .merge(all[1], all[2], "duplicate".into())
        .await
        .expect("merge");
    assert_eq!(
        filtered(CustomerFilter::default(), 4).await,
        expect(&|i| i != 0 && i != 2)
    );
    assert_eq!(
        filtered(
            CustomerFilter {
                show_deleted: true,
                ..Default::default()
            },
            4
        )
        .await,
        expect(&|i| i != 2)
    );
}

// ---- delete and undelete --------------------------------------------------------------------

async fn delete_releases_identities_and_undelete_waits_until_they_are_free<S: CustomerStore>(
    store: &S,
) {
    let number = phone("020 7946 0700");
    let a = create(store, named("Ada"), vec![holds(number.clone())]).await;
    let b = create(store, named("Bea"), vec![]).await;

    assert_eq!(reason(store.delete(a.id, Some(7)).await), "STALE_VERSION");
    let deleted = store.delete(a.id, Some(1)).await.expect("delete");
    assert!(deleted.deleted_at.is_some());
    assert_eq!(deleted.version, 2);
    assert_eq!(
        deleted.identities, a.identities,
        "still listed on the profile"
    );
    let again = store.delete(a.id, None).await.expect("delete again");
    assert_eq!(again, deleted, "deleting twice changes nothing");

    assert!(lookup(store, &number).await.is_empty());
    assert_eq!(get(store, a.id).await, deleted, "get still returns it");
    assert_eq!(
        reason(
            store
                .record_interaction(a.id, call("call", None), None)
                .await
        ),
        "CUSTOMER_DELETED"
    );
    assert_eq!(
        reason(
            store
                .record_satisfaction(a.id, measured(8.0, 8.0), None)
                .await
        ),
        "CUSTOMER_DELETED"
    );
    assert_eq!(
        reason(
            store
                .add_identity(a.id, holds(email("ada@example.com")))
                .await
        ),
        "CUSTOMER_DELETED"
    );
    assert_eq!(
        reason(store.merge(b.id, a.id, "x".into()).await),
        "CUSTOMER_DELETED"
    );

    // Its number is free for someone else, which blocks the undelete.
    store
        .add_identity(b.id, holds(number.clone()))
        .await
        .expect("claim the freed number");
    assert_eq!(lookup(store, &number).await, [b.id]);
    let blocked = store.undelete(a.id).await.expect_err("blocked");
    assert_eq!(blocked.reason(), "IDENTITY_CLAIMED");
    assert_eq!(blocked.kind(), ErrorKind::FailedPrecondition);
    assert!(get(store, a.id).await.deleted_at.is_some());

    store
        .remove_identity(b.id, number.clone())
        .await
        .expect("remove");
    let restored = store.undelete(a.id).await.expect("undelete");
    assert!(restored.deleted_at.is_none());
    assert_eq!(restored.version, 3);
    assert_eq!(lookup(store, &number).await, [a.id]);
    assert_eq!(reason(store.undelete(a.id).await), "CUSTOMER_NOT_DELETED");
    assert_eq!(reason(store.undelete(CustomerId::new()).await), "NOT_FOUND");
    assert_eq!(
        reason(store.delete(CustomerId::new(), None).await),
        "NOT_FOUND"
    );

    // A shared identity another customer shares too does not block an undelete.
    let desk = phone("020 7946 0701");
    let c = create(store, named("Cleo"), vec![shares(desk.clone())]).await;
    store.delete(c.id, None).await.expect("delete");
    store
        .add_identity(b.id, shares(desk.clone()))
        .await
        .expect("share");
    store.undelete(c.id).await.expect("undelete");
    let holders: BTreeSet<CustomerId> = lookup(store, &desk).await.into_iter().collect();
    assert_eq!(holders, BTreeSet::from([b.id, c.id]));
}

// ---- identities -----------------------------------------------------------------------------

async fn an_identity_is_owned_by_one_customer_unless_every_holder_shares_it<S: CustomerStore>(
    store: &S,
) {
    let switchboard = phone("020 7946 0101");
    let a = create(store, named("Acme Ltd"), vec![holds(switchboard.clone())]).await;
    let b = create(store, named("Acme Trading"), vec![]).await;

    let taken = store
        .add_identity(b.id, holds(switchboard.clone()))
        .await
        .expect_err("taken");
    assert!(
        matches!(&taken, Error::IdentityTaken { kind: "phone", value } if value == "+442079460101"),
        "{taken:?}"
    );
    assert_eq!(
        reason(store.add_identity(b.id, shares(switchboard.clone())).await),
        "IDENTITY_TAKEN",
        "B sharing it is not enough while A holds it unshared"
    );
    assert_eq!(
        get(store, b.id).await.version,
        1,
        "a refused claim changes nothing"
    );

    // Once A marks it shared too, B may hold it.
    let a = store
        .add_identity(
            a.id,
            Identity {
                value: switchboard.clone(),
                label: "switchboard".into(),
                shared: true,
            },
        )
        .await
        .expect("A shares its own number");
    assert_eq!(a.identities.len(), 1, "re-adding updates, never duplicates");
    assert!(a.identities[0].shared);
    assert_eq!(a.identities[0].label, "switchboard");
    assert_eq!(a.version, 2);
    let b = store
        .add_identity(b.id, shares(switchboard.clone()))
        .await
        .expect("both share it");
    let holders: BTreeSet<CustomerId> = lookup(store, &switchboard).await.into_iter().collect();
    assert_eq!(holders, BTreeSet::from([a.id, b.id]));

    // A third customer cannot take it unshared, nor can A unshare it while B holds it.
    let c = create(store, named("Someone"), vec![]).await;
    assert_eq!(
        reason(store.add_identity(c.id, holds(switchboard.clone())).await),
        "IDENTITY_TAKEN"
    );
    assert_eq!(
        reason(store.add_identity(a.id, holds(switchboard.clone())).await),
        "IDENTITY_TAKEN"
    );

    // Removing it from B leaves A the only holder; removing it twice is NOT_FOUND.
    let b = store
        .remove_identity(b.id, switchboard.clone())
        .await
        .expect("remove");
    assert!(b.identities.is_empty());
    assert_eq!(b.version, 3);
    assert_eq!(lookup(store, &switchboard).await, [a.id]);
    let gone = store
        .remove_identity(b.id, switchboard.clone())
        .await
        .expect_err("not held");
    assert!(
        matches!(
            gone,
            Error::NotFound {
                what: "identity",
                ..
            }
        ),
        "{gone:?}"
    );
    assert_eq!(
        reason(
            store
                .add_identity(CustomerId::new(), holds(email("x@example.com")))
                .await
        ),
        "NOT_FOUND"
    );
}

async fn concurrent_claims_of_one_identity_give_one_owner<S: CustomerStore>(store: &S) {
    let mut customers = Vec::new();
    for i in 0..16 {
        customers.push(create(store, named(&format!("Caller {i}")), vec![]).await);
    }
    // The race is timing-dependent: several rounds, each on a fresh number.
    for round in 0..6 {
        let number = phone(&format!("020 7946 02{round:02}"));
        let claims = customers
            .iter()
            .map(|c| store.add_identity(c.id, holds(number.clone())));
        let results = futures::future::join_all(claims).await;
        let mut outcomes: HashMap<&str, usize> = HashMap::new();
        for r in &results {
            let key = match r {
                Ok(_) => "OK",
                Err(e) => e.reason(),
            };
            *outcomes.entry(key).or_default() += 1;
        }
        assert_eq!(
            outcomes,
            HashMap::from([("OK", 1), ("IDENTITY_TAKEN", 15)]),
            "round {round}"
        );
        assert_eq!(lookup(store, &number).await.len(), 1);
    }
}

async fn an_unshared_claim_racing_shared_claims_never_leaves_two_holders<S: CustomerStore>(
    store: &S,
) {
    let mut customers = Vec::new();
    for i in 0..16 {
        customers.push(create(store, named(&format!("Caller {i}")), vec![]).await);
    }
    for round in 0..6 {
        let number = phone(&format!("020 7946 03{round:02}"));
        // Every fourth claim is unshared; the rest shared.
        let claims = customers.iter().enumerate().map(|(i, c)| {
            let identity = if i % 4 == 0 {
                holds(number.clone())
            } else {
                shares(number.clone())
            };
            store.add_identity(c.id, identity)
        });
        let results = futures::future::join_all(claims).await;
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| e.reason() == "IDENTITY_TAKEN"),
            "round {round}: {results:?}"
        );
        let holders = store.lookup(&number).await.expect("lookup");
        let unshared = holders
            .iter()
            .filter(|c| c.identities.iter().any(|i| i.value == number && !i.shared))
            .count();
        assert!(
            holders.len() == 1 || unshared == 0,
            "round {round}: {} holders, {unshared} unshared",
            holders.len()
        );
    }
}

async fn lookup_lists_live_holders_most_recently_updated_first<S: CustomerStore>(store: &S) {
    let desk = phone("020 7946 0800");
    let a = create(store, named("Ada"), vec![shares(desk.clone())]).await;
    let b = create(store, named("Bea"), vec![shares(desk.clone())]).await;
    let c = create(store, named("Cleo"), vec![shares(desk.clone())]).await;
    assert_eq!(lookup(store, &desk).await, [c.id, b.id, a.id]);
    store
        .update(
            a.id,
            ProfilePatch {
                segment: Some("smb".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("touch A");
    assert_eq!(lookup(store, &desk).await, [a.id, c.id, b.id]);
    // Any written form finds the normalised value.
    assert_eq!(lookup(store, &phone("+44 (20) 7946-0800")).await.len(), 3);

    store.delete(c.id, None).await.expect("delete");
    store
        .merge(a.id, b.id, "duplicate".into())
        .await
        .expect("merge");
    assert_eq!(lookup(store, &desk).await, [a.id], "only live holders");
    assert!(lookup(store, &email("nobody@example.com")).await.is_empty());

    let resolved = store
        .resolve(desk.clone(), "ignored".into())
        .await
        .expect("resolve");
    assert!(!resolved.created);
    assert_eq!(resolved.customer.id, a.id);
    assert!(resolved.others.is_empty());
}

async fn twenty_concurrent_resolves_of_one_new_identity_create_one_customer<S: CustomerStore>(
    store: &S,
) {
    let written = ["020 7946 0400", "+44 20 7946 0400", "(020) 7946-0400"];
    let calls =
        (0..20).map(|i| store.resolve(phone(written[i % written.len()]), "+442079460400".into()));
    let results: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("resolve"))
        .collect();
    let ids: HashSet<CustomerId> = results.iter().map(|r| r.customer.id).collect();
    assert_eq!(ids.len(), 1, "every caller gets the same customer: {ids:?}");
    assert_eq!(
        results.iter().filter(|r| r.created).count(),
        1,
        "one created it"
    );
    assert!(results.iter().all(|r| r.others.is_empty()));
    let id = results[0].customer.id;

    let created = get(store, id).await;
    assert_eq!(created.profile, named("+442079460400"), "a prospect");
    assert_eq!(created.identities, [holds(phone("020 7946 0400"))]);
    assert_eq!(lookup(store, &phone("020 7946 0400")).await, [id]);
    assert_eq!(
        list_all(store, CustomerFilter::default(), 100).await.len(),
        1
    );

    let again = store
        .resolve(phone("+442079460400"), "Named".into())
        .await
        .expect("resolve");
    assert!(!again.created);
    assert_eq!(again.customer, created, "found, not renamed");

    // Shared holders: the most recently updated, and the others.
    let desk = phone("020 7946 0401");
    let x = create(store, named("X"), vec![shares(desk.clone())]).await;
    let y = create(store, named("Y"), vec![shares(desk.clone())]).await;
    let shared = store.resolve(desk, String::new()).await.expect("resolve");
    assert_eq!((shared.customer.id, shared.others), (y.id, vec![x.id]));
}

// ---- timeline -------------------------------------------------------------------------------

async fn interactions_page_newest_first_and_replay_an_idempotency_key<S: CustomerStore>(store: &S) {
    let ada = create(store, named("Ada"), vec![]).await;
    // Nanoseconds, to see both stores keep the same microseconds.
    let t0 = OffsetDateTime::now_utc() - time::Duration::days(3);
    let middle = store
        .record_interaction(
            ada.id,
            call("billing question", Some(t0 + time::Duration::hours(1))),
            None,
        )
        .await
        .expect("record");
    let oldest = store
        .record_interaction(
            ada.id,
            NewInteraction {
                promised: "a call back".into(),
                given: "a refund".into(),
                ticket_id: Some(Uuid::now_v7()),
                agent_id: Some("agent-7".into()),
                direction: Direction::Outbound,
                channel: Channel::Email,
                ..call("broken router", Some(t0))
            },
            None,
        )
        .await
        .expect("record");
    let newest = store
        .record_interaction(
            ada.id,
            call("complaint", Some(t0 + time::Duration::hours(2))),
            None,
        )
        .await
        .expect("record");
    assert_eq!(middle.customer_id, ada.id);
    assert_eq!(oldest.occurred_at, to_micros(t0));
    assert_eq!(oldest.details.occurred_at, Some(to_micros(t0)));
    assert_eq!(oldest.details.channel, Channel::Email);
    assert_eq!(oldest.details.direction, Direction::Outbound);
    assert_eq!(oldest.details.agent_id.as_deref(), Some("agent-7"));
    assert_eq!(oldest.details.given, "a refund");
    assert!(oldest.created_at > oldest.occurred_at);
    assert_eq!(
        get(store, ada.id).await.version,
        1,
        "a contact is no profile change"
    );

    let page1 = store
        .list_interactions(ada.id, None, 2)
        .await
        .expect("page 1");
    let page1_ids: Vec<Uuid> = page1.items.iter().map(|i| i.id).collect();
    assert_eq!(page1_ids, [newest.id, middle.id]);
    assert_eq!(page1.items[0], newest, "listed as recorded");
    assert_eq!(page1.next, Some((middle.occurred_at, middle.id)));
    let page2 = store
        .list_interactions(ada.id, page1.next, 2)
        .await
        .expect("page 2");
    assert_eq!(page2.items, [oldest]);
    assert!(page2.next.is_none());

    // Replaying a key returns the first interaction and records nothing new.
    let first = store
        .record_interaction(ada.id, call("follow-up", None), Some("call-42".into()))
        .await
        .expect("record");
    let replay = store
        .record_interaction(ada.id, call("something else", None), Some("call-42".into()))
        .await
        .expect("replay");
    assert_eq!(replay, first);
    let all = store
        .list_interactions(ada.id, None, 100)
        .await
        .expect("list");
    assert_eq!(all.items.len(), 4);
    assert_eq!(
        all.items[0].id, first.id,
        "no occurred_at means now, the newest"
    );
    assert_eq!(first.occurred_at, first.created_at);

    let bea = create(store, named("Bea"), vec![]).await;
    assert_eq!(
        reason(
            store
                .record_interaction(bea.id, call("x", None), Some("call-42".into()))
                .await
        ),
        "IDEMPOTENCY_KEY_REUSED"
    );
    assert!(
        store
            .list_interactions(bea.id, None, 10)
            .await
            .expect("list")
            .items
            .is_empty()
    );

    let nobody = CustomerId::new();
    for key in [None, Some("call-43".to_owned())] {
        assert_eq!(
            reason(store.record_interaction(nobody, call("x", None), key).await),
            "NOT_FOUND"
        );
    }
    assert_eq!(
        reason(store.list_interactions(nobody, None, 10).await),
        "NOT_FOUND"
    );
    assert!(
        store
            .list_interactions(nobody, page1.next, 10)
            .await
            .expect("a page after a cursor")
            .items
            .is_empty()
    );
}

async fn satisfaction_keeps_running_figures_on_the_profile<S: CustomerStore>(store: &S) {
    let ada = create(store, named("Ada"), vec![]).await;
    let first = store
        .record_satisfaction(ada.id, measured(8.0, 6.0), Some("followup-1".into()))
        .await
        .expect("record");
    assert_eq!(first.details.measurement.c(), 0.75);
    assert_eq!(first.customer_id, ada.id);
    let after_one = get(store, ada.id).await;
    let s = after_one.satisfaction;
    assert_eq!(s.count, 1);
    assert_eq!(
        (s.mean_c(), s.mean_expected(), s.mean_perceived()),
        (0.75, 8.0, 6.0)
    );
    assert_eq!(s.last_c, Some(0.75));
    assert_eq!(s.last_at, Some(first.created_at));
    assert_eq!(after_one.version, 2);
    assert_eq!(after_one.updated_at, first.created_at);

    let replay = store
        .record_satisfaction(ada.id, measured(8.0, 6.0), Some("followup-1".into()))
        .await
        .expect("replay");
    assert_eq!(replay, first);
    assert_eq!(
        get(store, ada.id).await.satisfaction.count,
        1,
        "replays count once"
    );

    let second = store
        .record_satisfaction(
            ada.id,
            NewSatisfaction {
                ticket_id: Some(Uuid::now_v7()),
                agent_id: Some("agent-9".into()),
                comment: "better than expected".into(),
                ..measured(5.0, 7.5)
            },
            None,
        )
        .await
        .expect("record");
    assert_eq!(second.details.measurement.c(), 1.5);
    assert_eq!(second.details.comment, "better than expected");
    let s = get(store, ada.id).await.satisfaction;
    assert_eq!(s.count, 2);
    assert_close(s.mean_c(), 1.125);
    assert_close(s.mean_expected(), 6.5);
    assert_close(s.mean_perceived(), 6.75);
    assert_eq!(s.last_c, Some(1.5));

    // Concurrent follow-ups are all counted.
    let concurrent = (0..10).map(|_| store.record_satisfaction(ada.id, measured(10.0, 5.0), None));
    for r in futures::future::join_all(concurrent).await {
        r.expect("concurrent record");
    }
    let s = get(store, ada.id).await.satisfaction;
    assert_eq!(s.count, 12);
    assert_close(s.mean_c(), (0.75 + 1.5 + 10.0 * 0.5) / 12.0);
    assert_close(s.mean_expected(), (8.0 + 5.0 + 100.0) / 12.0);

    let all = store
        .list_satisfaction(ada.id, None, 100)
        .await
        .expect("list");
    assert_eq!(all.items.len(), 12);
    assert_eq!(
        all.items[10..],
        [second.clone(), first.clone()],
        "newest first"
    );
    let page = store
        .list_satisfaction(ada.id, None, 5)
        .await
        .expect("page");
    let rest = store
        .list_satisfaction(ada.id, page.next, 100)
        .await
        .expect("rest");
    let paged: Vec<Uuid> = page.items.iter().chain(&rest.items).map(|r| r.id).collect();
    let listed: Vec<Uuid> = all.items.iter().map(|r| r.id).collect();
    assert_eq!(paged, listed);

    let bea = create(store, named("Bea"), vec![]).await;
    assert_eq!(
        reason(
            store
                .record_satisfaction(bea.id, measured(1.0, 1.0), Some("followup-1".into()))
                .await
        ),
        "IDEMPOTENCY_KEY_REUSED"
    );
    assert_eq!(
        reason(
            store
                .record_satisfaction(CustomerId::new(), measured(8.0, 8.0), None)
                .await
        ),
        "NOT_FOUND"
    );
    assert_eq!(
        reason(store.list_satisfaction(CustomerId::new(), None, 10).await),
        "NOT_FOUND"
    );
}

// ---- tiers ----------------------------------------------------------------------------------

async fn tier_override_wins_and_recompute_reports_like_the_rule<S: CustomerStore>(store: &S) {
    // Total 10,000 units: A above 200 (2%), C below 50 (0.5%).
    const UNIT: i64 = 1_000_000;
    let whale = create(store, valued("Whale", 9000 * UNIT), vec![]).await;
    let big = create(store, valued("Big", 300 * UNIT), vec![]).await;
    let mid = create(store, valued("Mid", 100 * UNIT), vec![]).await;
    let mut small = Vec::new();
    for i in 0..30 {
        small.push(create(store, valued(&format!("Small {i:02}"), 20 * UNIT), vec![]).await);
    }
    // Deleted and merged customers are not evaluated.
    let gone = create(store, valued("Gone", 5000 * UNIT), vec![]).await;
    store.delete(gone.id, None).await.expect("delete");

    let dry = store
        .recompute_tiers(TieringPolicy::default(), true)
        .await
        .expect("dry run");
    assert_eq!(dry.evaluated, 33);
    assert_eq!(dry.changed, 3);
    assert_eq!(dry.per_tier, [2, 1, 30]);
    assert_eq!(dry.overridden, 0);
    assert_eq!(dry.total_value_micros, 10_000 * UNIT);
    assert_eq!(
        get(store, whale.id).await,
        whale,
        "a dry run changes nothing"
    );

    let overridden = store
        .set_tier_override(mid.id, Some((Tier::A, "strategic partner".into())), Some(1))
        .await
        .expect("override");
    assert_eq!(
        (overridden.tier(), overridden.computed_tier),
        (Tier::A, Tier::C)
    );
    let o = overridden.tier_override.clone().expect("override");
    assert_eq!((o.tier, o.reason.as_str()), (Tier::A, "strategic partner"));
    assert_eq!(o.set_at, overridden.updated_at);
    assert_eq!(overridden.version, 2);
    assert_eq!(
        reason(store.set_tier_override(mid.id, None, Some(1)).await),
        "STALE_VERSION"
    );
    assert_eq!(
        reason(store.set_tier_override(CustomerId::new(), None, None).await),
        "NOT_FOUND"
    );

    let report = store
        .recompute_tiers(TieringPolicy::default(), false)
        .await
        .expect("recompute");
    assert_eq!(report.evaluated, 33);
    assert_eq!(report.changed, 3);
    assert_eq!(
        report.per_tier,
        [3, 0, 30],
        "counts are of the tier in force"
    );
    assert_eq!(report.overridden, 1);
    let tiers = |c: &Customer| (c.tier(), c.computed_tier);
    let whale_now = get(store, whale.id).await;
    assert_eq!(tiers(&whale_now), (Tier::A, Tier::A));
    assert_eq!(whale_now.version, 2, "a changed tier is a new version");
    assert_eq!(tiers(&get(store, big.id).await), (Tier::A, Tier::A));
    let mid_now = get(store, mid.id).await;
    assert_eq!(tiers(&mid_now), (Tier::A, Tier::B), "the override survives");
    for s in &small {
        let now = get(store, s.id).await;
        assert_eq!(
            (tiers(&now), now.version),
            ((Tier::C, Tier::C), 1),
            "unchanged"
        );
    }
    let again = store
        .recompute_tiers(TieringPolicy::default(), false)
        .await
        .expect("again");
    assert_eq!(again.changed, 0, "a second run changes nothing");

    let cleared = store
        .set_tier_override(mid.id, None, Some(mid_now.version))
        .await
        .expect("clear");
    assert_eq!(tiers(&cleared), (Tier::B, Tier::B));
    assert!(cleared.tier_override.is_none());

    // Cumulative: A while the customers before make under 50%, B under 95.5%. Before Whale 0%
    // (A), before Big 90% (B), before Mid 93% (B), then the 20s from 94% in steps of 0.2%: the
    // first eight (ties broken by id, so the first created) are B.
    let cumulative = TieringPolicy::Cumulative {
        a_cumulative_share: 0.5,
        b_cumulative_share: 0.955,
    };
    let cum = store
        .recompute_tiers(cumulative, false)
        .await
        .expect("cumulative");
    assert_eq!(cum.per_tier, [1, 10, 22]);
    assert_eq!(cum.changed, 1 + 8, "Big A→B, eight smalls C→B");
    for (i, s) in small.iter().enumerate() {
        let expected = if i < 8 { Tier::B } else { Tier::C };
        assert_eq!(get(store, s.id).await.computed_tier, expected, "small {i}");
    }
}

/// xorshift64: reproducible pseudo-random values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn recompute_agrees_with_the_pure_rule_on_two_hundred_random_customers<S: CustomerStore>(
    store: &S,
) {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    for i in 0..200 {
        let micros = if i % 23 == 0 {
            0
        } else if i % 11 == 0 {
            // A group of ties, to exercise the id tie-break.
            250_000_000
        } else {
            // Log-uniform from 1 to 10,000 units.
            (1e6 * 10f64.powf(4.0 * rng.unit())) as i64
        };
        create(store, valued(&format!("Random {i:03}"), micros), vec![]).await;
    }
    let policies = [
        TieringPolicy::default(),
        TieringPolicy::Cumulative {
            a_cumulative_share: 0.6,
            b_cumulative_share: 0.9,
        },
        TieringPolicy::Share {
            a_min_share: 0.01,
            c_max_share: 0.002,
        },
        TieringPolicy::Cumulative {
            a_cumulative_share: 0.3,
            b_cumulative_share: 0.7,
        },
    ];
    let mut previous: HashMap<CustomerId, Tier> = HashMap::new();
    for policy in policies {
        let report = store
            .recompute_tiers(policy, false)
            .await
            .expect("recompute");
        let listed = list_all(store, CustomerFilter::default(), 1000).await;
        assert_eq!(listed.len(), 200);
        let pairs: Vec<(Uuid, i64)> = listed
            .iter()
            .map(|c| (c.id.0, c.profile.lifetime_value.micros()))
            .collect();
        let expected = classify(&pairs, &policy);
        let mut counts = [0i64; 3];
        for (c, want) in listed.iter().zip(&expected) {
            assert_eq!(
                c.computed_tier, *want,
                "{policy:?}: {} with {:?}",
                c.id, c.profile.lifetime_value
            );
            counts[*want as usize] += 1;
        }
        assert!(
            counts.iter().all(|n| *n > 0),
            "{policy:?} exercises every tier: {counts:?}"
        );
        assert_eq!(report.per_tier, counts);
        assert_eq!(report.evaluated, 200);
        let changed = listed
            .iter()
            .filter(|c| previous.get(&c.id).copied().unwrap_or(Tier::C) != c.computed_tier)
            .count();
        assert_eq!(report.changed, changed as i64, "{policy:?}");
        previous = listed.iter().map(|c| (c.id, c.computed_tier)).collect();
    }
}

// ---- merge ----------------------------------------------------------------------------------

async fn merge_moves_everything_to_the_survivor_and_undo_moves_back_exactly_that<
    S: CustomerStore,
>(
    store: &S,
) {
    let a = create(
        store,
        valued("Ada Lovelace", 100_000_000),
        vec![holds(phone("020 7946 0501"))],
    )
    .await;
    let desk = phone("020 7946 0509");
    let b = create(
        store,
        valued("A. Lovelace", 50_500_000),
        vec![
            holds(phone("020 7946 0502")),
            holds(email("ada@example.com")),
            shares(desk.clone()),
        ],
    )
    .await;
    // A shares the desk phone too: that identity stays with B's tombstone.
    store
        .add_identity(a.id, shares(desk.clone()))
        .await
        .expect("share");
    let a_call = store
        .record_interaction(a.id, call("a's call", None), None)
        .await
        .expect("record");
    let b_calls = [
        store
            .record_interaction(b.id, call("b's first", None), None)
            .await
            .expect("record"),
        store
            .record_interaction(b.id, call("b's second", None), None)
            .await
            .expect("record"),
    ];
    store
        .record_satisfaction(a.id, measured(10.0, 10.0), None)
        .await
        .expect("record");
    store
        .record_satisfaction(b.id, measured(8.0, 6.0), None)
        .await
        .expect("record");
    let a_before = get(store, a.id).await;
    let b_before = get(store, b.id).await;

    let merge = store
        .merge(a.id, b.id, "same person, two sign-ups".into())
        .await
        .expect("merge");
    assert_eq!((merge.survivor, merge.merged), (a.id, b.id));
    assert_eq!(merge.reason, "same person, two sign-ups");
    assert_eq!(
        (
            merge.identities_moved,
            merge.interactions_moved,
            merge.satisfaction_moved
        ),
        (2, 2, 1)
    );
    assert!(merge.undone_at.is_none());

    let survivor = get(store, a.id).await;
    assert_eq!(
        values(&survivor),
        BTreeSet::from([
            "+442079460501".to_owned(),
            "+442079460502".to_owned(),
            "+442079460509".to_owned(),
            "ada@example.com".to_owned(),
        ])
    );
    assert_eq!(survivor.profile.lifetime_value.micros(), 150_500_000);
    assert_eq!(survivor.satisfaction.count, 2);
    assert_close(survivor.satisfaction.mean_c(), 0.875);
    assert_eq!(survivor.version, a_before.version + 1);
    assert_eq!(
        get(store, b.id).await,
        survivor,
        "the merged id reads as the survivor"
    );
    assert_eq!(lookup(store, &phone("020 7946 0502")).await, [a.id]);
    assert_eq!(
        lookup(store, &desk).await,
        [a.id],
        "the tombstone is not a holder"
    );
    let timeline: BTreeSet<Uuid> = store
        .list_interactions(b.id, None, 100)
        .await
        .expect("list")
        .items
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(
        timeline,
        BTreeSet::from([a_call.id, b_calls[0].id, b_calls[1].id])
    );
    assert_eq!(
        store
            .list_satisfaction(b.id, None, 100)
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    assert_eq!(
        ids(&list_all(store, CustomerFilter::default(), 10).await),
        [a.id]
    );
    // The merged id takes new contacts (they land on the survivor), but no edits.
    let late = store
        .record_interaction(b.id, call("called on the old number", None), None)
        .await
        .expect("record");
    assert_eq!(late.customer_id, a.id);
    let late_score = store
        .record_satisfaction(b.id, measured(5.0, 5.0), None)
        .await
        .expect("record");
    assert_eq!(late_score.customer_id, a.id);
    assert_eq!(reason(store.delete(b.id, None).await), "CUSTOMER_MERGED");

    let undone = store.undo_merge(merge.id).await.expect("undo");
    assert_eq!(undone.id, merge.id);
    assert!(undone.undone_at.is_some());
    assert_eq!(
        (
            undone.identities_moved,
            undone.interactions_moved,
            undone.satisfaction_moved
        ),
        (2, 2, 1),
        "the record keeps what the merge moved"
    );
    let b_back = get(store, b.id).await;
    assert_eq!(b_back.id, b.id);
    assert!(b_back.merged_into.is_none());
    assert_eq!(b_back.identities, b_before.identities);
    assert_eq!(b_back.profile, b_before.profile);
    assert_eq!(b_back.satisfaction.count, 1);
    assert_eq!(b_back.satisfaction.mean_c(), 0.75);
    let a_back = get(store, a.id).await;
    assert_eq!(a_back.identities, a_before.identities);
    assert_eq!(a_back.profile.lifetime_value.micros(), 100_000_000);
    assert_eq!(
        a_back.satisfaction.count, 2,
        "its own and the one after the merge"
    );
    assert_close(a_back.satisfaction.mean_c(), 1.0);
    let b_timeline: BTreeSet<Uuid> = store
        .list_interactions(b.id, None, 100)
        .await
        .expect("list")
        .items
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(b_timeline, BTreeSet::from([b_calls[0].id, b_calls[1].id]));
    let a_timeline: BTreeSet<Uuid> = store
        .list_interactions(a.id, None, 100)
        .await
        .expect("list")
        .items
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(
        a_timeline,
        BTreeSet::from([a_call.id, late.id]),
        "what arrived after the merge stays with the survivor"
    );
    assert_eq!(lookup(store, &phone("020 7946 0502")).await, [b.id]);
    let desk_holders: BTreeSet<CustomerId> = lookup(store, &desk).await.into_iter().collect();
    assert_eq!(desk_holders, BTreeSet::from([a.id, b.id]));
    assert_eq!(
        ids(&list_all(store, CustomerFilter::default(), 10).await),
        [a.id, b.id]
    );
    assert_eq!(
        reason(store.undo_merge(merge.id).await),
        "MERGE_ALREADY_UNDONE"
    );
    assert_eq!(reason(store.undo_merge(Uuid::now_v7()).await), "NOT_FOUND");
}

async fn undo_after_other_merges_moves_back_only_its_own_rows<S: CustomerStore>(store: &S) {
    let a = create(
        store,
        valued("A", 1_000_000),
        vec![holds(phone("020 7946 0511"))],
    )
    .await;
    let b = create(
        store,
        valued("B", 2_000_000),
        vec![holds(phone("020 7946 0512"))],
    )
    .await;
    let c = create(
        store,
        valued("C", 4_000_000),
        vec![holds(phone("020 7946 0513"))],
    )
    .await;
    let d = create(store, valued("D", 8_000_000), vec![]).await;
    let b_call = store
        .record_interaction(b.id, call("b", None), None)
        .await
        .expect("record");
    let c_call = store
        .record_interaction(c.id, call("c", None), None)
        .await
        .expect("record");
    store
        .record_satisfaction(b.id, measured(10.0, 2.0), None)
        .await
        .expect("record");
    store
        .record_satisfaction(c.id, measured(10.0, 4.0), None)
        .await
        .expect("record");

    let b_into_a = store
        .merge(a.id, b.id, "dup".into())
        .await
        .expect("merge B");
    let c_into_a = store
        .merge(a.id, c.id, "dup".into())
        .await
        .expect("merge C");
    let merged = get(store, a.id).await;
    assert_eq!(merged.profile.lifetime_value.micros(), 7_000_000);
    assert_eq!(merged.identities.len(), 3);
    assert_eq!(merged.satisfaction.count, 2);

    // Undo the first while the second stands: only B's rows and value go back.
    store.undo_merge(b_into_a.id).await.expect("undo B");
    let a_now = get(store, a.id).await;
    assert_eq!(a_now.profile.lifetime_value.micros(), 5_000_000);
    assert_eq!(
        values(&a_now),
        BTreeSet::from(["+442079460511".to_owned(), "+442079460513".to_owned()])
    );
    assert_eq!(a_now.satisfaction.count, 1);
    assert_close(a_now.satisfaction.mean_c(), 0.4);
    let a_timeline: Vec<Uuid> = store
        .list_interactions(a.id, None, 10)
        .await
        .expect("list")
        .items
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(a_timeline, [c_call.id]);
    let b_now = get(store, b.id).await;
    assert_eq!(b_now.id, b.id, "B is itself again");
    assert_eq!(values(&b_now), BTreeSet::from(["+442079460512".to_owned()]));
    assert_eq!(b_now.profile.lifetime_value.micros(), 2_000_000);
    assert_close(b_now.satisfaction.mean_c(), 0.2);
    assert_eq!(
        store
            .list_interactions(b.id, None, 10)
            .await
            .expect("list")
            .items[0]
            .id,
        b_call.id
    );
    assert_eq!(get(store, c.id).await.id, a.id, "C is still merged into A");

    // A merge whose survivor was merged on cannot be undone until that later merge is.
    let a_into_d = store
        .merge(d.id, a.id, "dup".into())
        .await
        .expect("merge A into D");
    assert_eq!(get(store, c.id).await.id, d.id, "merges chain");
    assert_eq!(lookup(store, &phone("020 7946 0513")).await, [d.id]);
    assert_eq!(
        reason(store.undo_merge(c_into_a.id).await),
        "SURVIVOR_MERGED_SINCE"
    );
    store.undo_merge(a_into_d.id).await.expect("undo A into D");
    store.undo_merge(c_into_a.id).await.expect("undo C into A");
    for (customer, value, phone_number) in [
        (a.id, 1_000_000, "020 7946 0511"),
        (b.id, 2_000_000, "020 7946 0512"),
        (c.id, 4_000_000, "020 7946 0513"),
    ] {
        let now = get(store, customer).await;
        assert_eq!(now.id, customer);
        assert_eq!(now.profile.lifetime_value.micros(), value);
        assert_eq!(lookup(store, &phone(phone_number)).await, [customer]);
    }
    assert_eq!(
        get(store, d.id).await.profile.lifetime_value.micros(),
        8_000_000
    );
    assert_eq!(
        list_all(store, CustomerFilter::default(), 10).await.len(),
        4
    );
}

async fn merges_refuse_deleted_merged_or_unknown_customers<S: CustomerStore>(store: &S) {
    let a = create(store, named("Ada"), vec![]).await;
    let b = create(store, named("Bea"), vec![holds(phone("020 7946 0601"))]).await;
    assert_eq!(
        reason(store.merge(a.id, CustomerId::new(), "typo".into()).await),
        "NOT_FOUND"
    );
    assert_eq!(
        reason(store.merge(CustomerId::new(), a.id, "typo".into()).await),
        "NOT_FOUND"
    );

    let merge = store
        .merge(a.id, b.id, "duplicate".into())
        .await
        .expect("merge");
    assert_eq!(
        reason(store.merge(a.id, b.id, "again".into()).await),
        "CUSTOMER_MERGED"
    );
    let c = create(store, named("Cleo"), vec![]).await;
    assert_eq!(
        reason(store.merge(b.id, c.id, "into a tombstone".into()).await),
        "CUSTOMER_MERGED"
    );

    // The survivor is deleted since: its identities (B's among them) were released and could
    // have been claimed, so the undo is refused until it is undeleted.
    store.delete(a.id, None).await.expect("delete the survivor");
    assert_eq!(reason(store.undo_merge(merge.id).await), "SURVIVOR_DELETED");
    assert!(lookup(store, &phone("020 7946 0601")).await.is_empty());
    store.undelete(a.id).await.expect("undelete");
    store.undo_merge(merge.id).await.expect("undo");
    assert_eq!(lookup(store, &phone("020 7946 0601")).await, [b.id]);
}

/// Two customers share a number; one is merged into the other, and the survivor then gives the
/// number up. Nobody live holds it (lookup is empty). The merged profile's tombstone still has
/// its (shared) row, but a tombstone holds nothing, for claims as for lookups: the number
/// resolves to a new prospect, who owns it unshared, so an IVR caller on it is never stuck.
async fn an_identity_left_only_on_a_merged_tombstone_can_be_resolved_again<S: CustomerStore>(
    store: &S,
) {
    let number = phone("020 7946 0900");
    let a = create(store, named("Ada"), vec![shares(number.clone())]).await;
    let b = create(store, named("Bea"), vec![shares(number.clone())]).await;
    store
        .merge(a.id, b.id, "duplicate".into())
        .await
        .expect("merge");
    store
        .remove_identity(a.id, number.clone())
        .await
        .expect("the survivor gives the number up");
    assert!(
        lookup(store, &number).await.is_empty(),
        "nobody live holds it"
    );
    let resolved = store
        .resolve(number.clone(), "new caller".into())
        .await
        .expect("an unheld number resolves to a new prospect");
    assert!(resolved.created);
    assert_eq!(lookup(store, &number).await, [resolved.customer.id]);
}

/// Undoing a merge brings back what stayed inert on the tombstone (identities the survivor held
/// too) only if no live customer has claimed it since, as an undelete does: otherwise the undo
/// is refused with IDENTITY_CLAIMED and changes nothing, rather than leave two owners.
async fn undoing_a_merge_restores_a_tombstones_identities_only_if_nobody_claimed_them_since<
    S: CustomerStore,
>(
    store: &S,
) {
    // A caller reclaims the number the survivor gave up.
    let number = phone("020 7946 0910");
    let own = phone("020 7946 0911");
    let a = create(store, named("Ada"), vec![shares(number.clone())]).await;
    let b = create(
        store,
        named("Bea"),
        vec![shares(number.clone()), holds(own.clone())],
    )
    .await;
    let merge = store
        .merge(a.id, b.id, "duplicate".into())
        .await
        .expect("merge");
    assert_eq!(
        merge.identities_moved, 1,
        "the number stays on the tombstone"
    );
    store
        .remove_identity(a.id, number.clone())
        .await
        .expect("the survivor gives the number up");
    let caller = store
        .resolve(number.clone(), "new caller".into())
        .await
        .expect("resolve")
        .customer;
    assert!(!caller.identities[0].shared);
    let a_before = get(store, a.id).await;
    let blocked = store.undo_merge(merge.id).await.expect_err("blocked");
    assert_eq!(blocked.reason(), "IDENTITY_CLAIMED");
    assert_eq!(blocked.kind(), ErrorKind::FailedPrecondition);
    assert_eq!(
        get(store, b.id).await,
        a_before,
        "still merged, nothing changed"
    );
    assert_eq!(lookup(store, &own).await, [a.id]);
    assert_eq!(lookup(store, &number).await, [caller.id]);

    // Once the caller shares it, the tombstone's shared row may come back beside it.
    store
        .add_identity(caller.id, shares(number.clone()))
        .await
        .expect("share");
    let undone = store.undo_merge(merge.id).await.expect("undo");
    assert!(undone.undone_at.is_some());
    let b_back = get(store, b.id).await;
    assert_eq!(b_back.id, b.id);
    assert_eq!(b_back.identities, b.identities);
    assert_eq!(lookup(store, &own).await, [b.id]);
    let holders: BTreeSet<CustomerId> = lookup(store, &number).await.into_iter().collect();
    assert_eq!(holders, BTreeSet::from([caller.id, b.id]));

    // The survivor itself may now own the number unshared, which blocks the undo just as well;
    // once nobody live holds it, the undo gives it back to the merged profile alone.
    let desk = phone("020 7946 0912");
    let c = create(store, named("Cleo"), vec![shares(desk.clone())]).await;
    let d = create(store, named("Dot"), vec![shares(desk.clone())]).await;
    let merge = store
        .merge(c.id, d.id, "duplicate".into())
        .await
        .expect("merge");
    let c_now = store
        .add_identity(c.id, holds(desk.clone()))
        .await
        .expect("the tombstone's row does not stop the survivor owning it");
    assert!(!c_now.identities[0].shared);
    assert_eq!(reason(store.undo_merge(merge.id).await), "IDENTITY_CLAIMED");
    assert_eq!(lookup(store, &desk).await, [c.id]);
    store
        .remove_identity(c.id, desk.clone())
        .await
        .expect("remove");
    assert!(lookup(store, &desk).await.is_empty());
    store.undo_merge(merge.id).await.expect("undo");
    assert_eq!(lookup(store, &desk).await, [d.id]);

    // An undelete, too, ignores a tombstone's row; the undo of that merge is then refused.
    let line = phone("020 7946 0913");
    let e = create(store, named("Eve"), vec![holds(line.clone())]).await;
    store.delete(e.id, None).await.expect("delete");
    let f = create(store, named("Fay"), vec![shares(line.clone())]).await;
    let g = create(store, named("Gil"), vec![shares(line.clone())]).await;
    let merge = store
        .merge(f.id, g.id, "duplicate".into())
        .await
        .expect("merge");
    assert_eq!(
        reason(store.undelete(e.id).await),
        "IDENTITY_CLAIMED",
        "the survivor holds it shared"
    );
    store
        .remove_identity(f.id, line.clone())
        .await
        .expect("remove");
    store
        .undelete(e.id)
        .await
        .expect("only the tombstone has it");
    assert_eq!(lookup(store, &line).await, [e.id]);
    assert_eq!(reason(store.undo_merge(merge.id).await), "IDENTITY_CLAIMED");
    assert_eq!(get(store, g.id).await.id, f.id, "still merged");
}
