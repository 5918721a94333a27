//! The behaviour of an agent store, one suite for every store. Each test is an `async fn` over
//! any [`AgentStore`]; `conformance!` runs it on PostgreSQL (`pg::`, a fresh database per test
//! through `#[sqlx::test]`, needs `DATABASE_URL`), on SQLite in memory (`sqlite_memory::`, one
//! connection) and on a SQLite file (`sqlite_file::`, several connections on a multi-threaded
//! runtime, so concurrent upserts really contend for the writer): create and masked update,
//! optimistic concurrency, idempotent upserts, concurrent creation of one id, listing with
//! filters and keyset pages, batch reads. The PostgreSQL indexes have a test of their own.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::PgPool;
use tierline_proto::prost_types::FieldMask;
use tierline_proto::routing as pb;
use tierline_routing::agents::{
    AgentFilter, AgentStore, AgentUpsert, PgAgents, agent_to_proto, parse_list_agents, parse_upsert,
};
use tierline_routing::error::Error;
use tierline_runtime::ServiceError;
use tierline_types::Channel;

/// Runs each named test body on every store.
macro_rules! conformance {
    ($($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        mod pg {
            use std::sync::Arc;

            use sqlx::PgPool;
            use tierline_routing::agents::PgAgents;
            $(
                #[sqlx::test(migrator = "tierline_routing::agents::MIGRATOR")]
                $(#[$attr])*
                async fn $name(pool: PgPool) {
                    super::$name(Arc::new(PgAgents::new(pool))).await;
                }
            )+
        }

        mod sqlite_memory {
            use std::sync::Arc;

            use tierline_routing::agents::SqliteAgents;
            $(
                #[tokio::test]
                $(#[$attr])*
                async fn $name() {
                    let store = SqliteAgents::in_memory().await.expect("open in memory");
                    super::$name(Arc::new(store)).await;
                }
            )+
        }

        mod sqlite_file {
            use std::sync::Arc;

            use tierline_routing::agents::SqliteAgents;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                $(#[$attr])*
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temporary directory");
                    let store = SqliteAgents::open(dir.path().join("routing.db"))
                        .await
                        .expect("open a new file");
                    super::$name(Arc::new(store.clone())).await;
                    store.close().await;
                }
            )+
        }
    };
}

conformance!(
    an_absent_agent_is_created_at_version_1,
    creating_without_a_display_name_is_invalid,
    an_update_changes_only_the_masked_fields,
    a_stale_expected_version_is_aborted,
    an_expected_version_for_an_absent_agent_is_aborted,
    an_unchanged_upsert_keeps_the_version,
    concurrent_upserts_of_one_new_id_all_succeed_on_one_row,
    list_filters_combine,
    list_pages_by_id_without_gaps_or_repeats,
    get_many_returns_the_existing_agents_by_id,
    a_stored_record_converts_to_the_wire,
);

/// A store as the router holds it.
type Store = Arc<dyn AgentStore>;

fn capacity(channel: Channel, n: i32) -> pb::ChannelCapacity {
    pb::ChannelCapacity {
        channel: channel.to_wire() as i32,
        max_active_tickets: n,
    }
}

fn agent(id: &str) -> pb::Agent {
    pb::Agent {
        id: id.into(),
        display_name: format!("Agent {id}"),
        departments: vec!["billing".into()],
        team_id: String::new(),
        skills: vec!["language:en".into()],
        capacities: vec![capacity(Channel::Voice, 1), capacity(Channel::Chat, 3)],
        ..Default::default()
    }
}

/// Parses a request as the API would, so the tests go through the same boundary.
fn upsert(agent: pb::Agent, mask: &[&str], expected_version: Option<i64>) -> AgentUpsert {
    parse_upsert(&pb::UpsertAgentRequest {
        agent: Some(agent),
        update_mask: Some(FieldMask {
            paths: mask.iter().map(|p| (*p).to_owned()).collect(),
        }),
        expected_version,
    })
    .expect("valid request")
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn ids(records: &[tierline_routing::agents::AgentRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

async fn an_absent_agent_is_created_at_version_1(store: Store) {
    assert_eq!(store.get("agent-7").await.expect("get"), None);
    // A mask is ignored when creating: every field is taken.
    let created = store
        .upsert(&upsert(agent("agent-7"), &["disabled"], None))
        .await
        .expect("created");
    assert_eq!(created.version, 1);
    assert_eq!(created.display_name, "Agent agent-7");
    assert_eq!(created.departments, set(&["billing"]));
    assert_eq!(created.skills, set(&["language:en"]));
    assert_eq!(created.capacity.get(Channel::Voice), 1);
    assert_eq!(created.capacity.get(Channel::Chat), 3);
    assert_eq!(created.capacity.get(Channel::Email), 0);
    assert_eq!(created.team_id, None);
    assert!(!created.disabled);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(store.get("agent-7").await.expect("get"), Some(created));
}

async fn creating_without_a_display_name_is_invalid(store: Store) {
    let nameless = pb::Agent {
        display_name: String::new(),
        ..agent("agent-7")
    };
    let err = store
        .upsert(&upsert(nameless, &["disabled"], None))
        .await
        .expect_err("no name");
    let Error::InvalidArgument(v) = &err else {
        panic!("not INVALID_ARGUMENT: {err}");
    };
    assert_eq!(v.as_slice()[0].field, "agent.display_name");
    assert_eq!(store.get("agent-7").await.expect("get"), None);
}

async fn an_update_changes_only_the_masked_fields(store: Store) {
    let v1 = store
        .upsert(&upsert(agent("agent-7"), &[], None))
        .await
        .expect("created");
    let change = pb::Agent {
        display_name: "Renamed".into(),
        departments: vec!["sales".into(), "billing".into()],
        team_id: "key-accounts".into(),
        skills: vec![],
        capacities: vec![capacity(Channel::Email, 5)],
        disabled: true,
        ..agent("agent-7")
    };
    let v2 = store
        .upsert(&upsert(
            change.clone(),
            &["departments", "team_id"],
            Some(1),
        ))
        .await
        .expect("updated");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.departments, set(&["billing", "sales"]));
    assert_eq!(v2.team_id.as_deref(), Some("key-accounts"));
    assert_eq!(v2.display_name, v1.display_name, "not in the mask");
    assert_eq!(v2.skills, v1.skills);
    assert_eq!(v2.capacity, v1.capacity);
    assert!(!v2.disabled);
    assert_eq!(v2.created_at, v1.created_at);
    assert!(v2.updated_at > v1.updated_at);

    // An empty mask means every field; no expected version means no check.
    let v3 = store
        .upsert(&upsert(change, &[], None))
        .await
        .expect("updated");
    assert_eq!(v3.version, 3);
    assert_eq!(v3.display_name, "Renamed");
    assert!(v3.skills.is_empty());
    assert_eq!(v3.capacity.get(Channel::Email), 5);
    assert_eq!(v3.capacity.get(Channel::Voice), 0);
    assert!(v3.disabled);
    assert_eq!(store.get("agent-7").await.expect("get"), Some(v3));
}

async fn a_stale_expected_version_is_aborted(store: Store) {
    store
        .upsert(&upsert(agent("agent-7"), &[], None))
        .await
        .expect("created");
    let renamed = pb::Agent {
        display_name: "Renamed".into(),
        ..agent("agent-7")
    };
    store
        .upsert(&upsert(renamed.clone(), &["display_name"], Some(1)))
        .await
        .expect("v2");
    let err = store
        .upsert(&upsert(
            pb::Agent {
                disabled: true,
                ..renamed
            },
            &["disabled"],
            Some(1),
        ))
        .await
        .expect_err("stale");
    assert_eq!(err.reason(), "STALE_VERSION");
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Aborted);
    let stored = store.get("agent-7").await.expect("get").expect("exists");
    assert_eq!(stored.version, 2);
    assert!(!stored.disabled, "nothing written");
}

async fn an_expected_version_for_an_absent_agent_is_aborted(store: Store) {
    let err = store
        .upsert(&upsert(agent("agent-7"), &[], Some(1)))
        .await
        .expect_err("absent");
    let Error::StaleVersion {
        expected, actual, ..
    } = &err
    else {
        panic!("not STALE_VERSION: {err}");
    };
    assert_eq!((*expected, *actual), (1, 0));
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Aborted);
    assert_eq!(store.get("agent-7").await.expect("get"), None);
}

async fn an_unchanged_upsert_keeps_the_version(store: Store) {
    let created = store
        .upsert(&upsert(agent("agent-7"), &[], None))
        .await
        .expect("created");
    // The same values again, in another order, with or without the right expected version.
    let reordered = pb::Agent {
        capacities: vec![capacity(Channel::Chat, 3), capacity(Channel::Voice, 1)],
        departments: vec!["billing".into(), "billing".into()],
        ..agent("agent-7")
    };
    for expected in [None, Some(1)] {
        let again = store
            .upsert(&upsert(reordered.clone(), &[], expected))
            .await
            .expect("unchanged");
        assert_eq!(again, created);
    }
    // A mask naming only fields that are already so changes nothing either.
    let other_name = pb::Agent {
        display_name: "Someone Else".into(),
        ..agent("agent-7")
    };
    let again = store
        .upsert(&upsert(other_name, &["skills", "disabled"], None))
        .await
        .expect("unchanged");
    assert_eq!(again, created);
}

async fn concurrent_upserts_of_one_new_id_all_succeed_on_one_row(store: Store) {
    // Sixteen different names: every upsert is a change, so the versions must be exactly
    // 1..=16, each returned once, and the row must end at 16.
    let tasks = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let named = pb::Agent {
                display_name: format!("Name {i}"),
                ..agent("agent-new")
            };
            store.upsert(&upsert(named, &[], None)).await
        })
    });
    let results = futures::future::join_all(tasks).await;
    let mut versions = Vec::new();
    for result in results {
        let record = result.expect("task").expect("every upsert succeeds");
        versions.push(record.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=16).collect::<Vec<i64>>());
    let all = AgentFilter {
        include_disabled: true,
        ..Default::default()
    };
    let rows = store.list(&all, None, 100).await.expect("list");
    assert_eq!(ids(&rows), ["agent-new"], "one row");
    let stored = store.get("agent-new").await.expect("get").expect("exists");
    assert_eq!(stored.version, 16);

    // Sixteen identical upserts of another new id: one creates, the rest change nothing.
    let tasks = (0..16).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.upsert(&upsert(agent("agent-same"), &[], None)).await })
    });
    for result in futures::future::join_all(tasks).await {
        let record = result.expect("task").expect("every upsert succeeds");
        assert_eq!(record.version, 1);
    }
}

/// Agents a0..a9: even ones in billing, odd ones in sales, a0-a2 in team "t1", a3 disabled.
async fn seed(store: &dyn AgentStore) {
    for i in 0..10 {
        let department = if i % 2 == 0 { "billing" } else { "sales" };
        let a = pb::Agent {
            departments: vec![department.into(), "common".into()],
            team_id: if i < 3 { "t1".into() } else { String::new() },
            disabled: i == 3,
            ..agent(&format!("a{i}"))
        };
        store.upsert(&upsert(a, &[], None)).await.expect("seed");
    }
}

async fn list_filters_combine(store: Store) {
    seed(store.as_ref()).await;
    let list = |filter: AgentFilter| {
        let store = store.clone();
        async move { store.list(&filter, None, 100).await.expect("list") }
    };
    assert_eq!(
        ids(&list(AgentFilter::default()).await),
        ["a0", "a1", "a2", "a4", "a5", "a6", "a7", "a8", "a9"],
        "disabled left out by default"
    );
    assert_eq!(
        ids(&list(AgentFilter {
            include_disabled: true,
            ..Default::default()
        })
        .await)
        .len(),
        10
    );
    assert_eq!(
        ids(&list(AgentFilter {
            department: Some("sales".into()),
            ..Default::default()
        })
        .await),
        ["a1", "a5", "a7", "a9"]
    );
    assert_eq!(
        ids(&list(AgentFilter {
            department: Some("sales".into()),
            include_disabled: true,
            ..Default::default()
        })
        .await),
        ["a1", "a3", "a5", "a7", "a9"]
    );
    assert_eq!(
        ids(&list(AgentFilter {
            team_id: Some("t1".into()),
            ..Default::default()
        })
        .await),
        ["a0", "a1", "a2"]
    );
    assert_eq!(
        ids(&list(AgentFilter {
            department: Some("billing".into()),
            team_id: Some("t1".into()),
            include_disabled: false,
        })
        .await),
        ["a0", "a2"]
    );
    assert!(
        list(AgentFilter {
            department: Some("nowhere".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

async fn list_pages_by_id_without_gaps_or_repeats(store: Store) {
    seed(store.as_ref()).await;
    let filter = AgentFilter {
        department: Some("common".into()),
        include_disabled: true,
        team_id: None,
    };
    let page1 = store.list(&filter, None, 4).await.expect("page 1");
    assert_eq!(ids(&page1), ["a0", "a1", "a2", "a3"]);
    let page2 = store.list(&filter, Some("a3"), 4).await.expect("page 2");
    assert_eq!(ids(&page2), ["a4", "a5", "a6", "a7"]);
    let page3 = store.list(&filter, Some("a7"), 4).await.expect("page 3");
    assert_eq!(ids(&page3), ["a8", "a9"]);

    // Through the parsed request and its page tokens, as ListAgents does.
    let request = |token: String| pb::ListAgentsRequest {
        page_size: 4,
        page_token: token,
        department: "common".into(),
        ..Default::default()
    };
    let mut token = String::new();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let query = parse_list_agents(&request(token)).expect("valid");
        let (agents, next) = store.list_page(&query).await.expect("page");
        seen.extend(agents.iter().map(|a| a.id.clone()));
        pages += 1;
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen, ["a0", "a1", "a2", "a4", "a5", "a6", "a7", "a8", "a9"]);
    assert_eq!(pages, 3);

    // A token used with another filter is refused.
    let query = parse_list_agents(&request(String::new())).expect("valid");
    let (_, next) = store.list_page(&query).await.expect("page");
    let changed = pb::ListAgentsRequest {
        department: "billing".into(),
        ..request(next)
    };
    let err = parse_list_agents(&changed).expect_err("filter changed");
    assert_eq!(
        err.field_violations()
            .iter()
            .map(|f| f.field.as_str())
            .collect::<Vec<_>>(),
        ["page_token"]
    );
}

async fn get_many_returns_the_existing_agents_by_id(store: Store) {
    seed(store.as_ref()).await;
    let wanted = ["a7", "missing", "a1", "a3", "a7"].map(str::to_owned);
    let found = store.get_many(&wanted).await.expect("get_many");
    assert_eq!(ids(&found), ["a1", "a3", "a7"]);
    assert!(found[1].disabled, "disabled agents are returned too");
    assert!(store.get_many(&[]).await.expect("none").is_empty());
}

async fn a_stored_record_converts_to_the_wire(store: Store) {
    let created = store
        .upsert(&upsert(agent("agent-7"), &[], None))
        .await
        .expect("created");
    let wire = agent_to_proto(&created, None);
    assert_eq!(wire.version, 1);
    assert_eq!(
        wire.capacities,
        [capacity(Channel::Voice, 1), capacity(Channel::Chat, 3)]
    );
    assert!(wire.create_time.is_some() && wire.update_time.is_some());
    // What GetAgent returns, sent back unchanged, changes nothing.
    let again = store
        .upsert(&upsert(wire, &[], Some(1)))
        .await
        .expect("unchanged");
    assert_eq!(again, created);
}

#[sqlx::test(migrator = "tierline_routing::agents::MIGRATOR")]
async fn pg_list_queries_use_indexes_at_10000_agents(pool: PgPool) {
    // 10,000 agents in 50 departments (two each), 100 teams, every 10th disabled.
    sqlx::query(
        "INSERT INTO agents (id, display_name, departments, team_id, skills, capacities, \
             disabled, version, create_time, update_time) \
         SELECT 'agent-' || lpad(i::text, 5, '0'), 'Agent ' || i, \
             ARRAY['dept-' || (i % 50), 'dept-' || ((i + 1) % 50)], 'team-' || (i % 100), \
             '{}', '{\"chat\": 3}', i % 10 = 0, 1, now(), now() \
         FROM generate_series(1, 10000) AS i",
    )
    .execute(&pool)
    .await
    .expect("seed");
    sqlx::query("ANALYZE agents")
        .execute(&pool)
        .await
        .expect("analyze");
    // The predicates PgAgents::list writes, one filter at a time.
    for (predicate, value) in [
        ("departments @> ARRAY[$1]::text[]", "dept-7"),
        ("team_id = $1", "team-7"),
        ("id > $1", "agent-05000"),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN SELECT * FROM agents WHERE {predicate} AND NOT disabled ORDER BY id LIMIT 101"
        )))
        .bind(value)
        .fetch_all(&pool)
        .await
        .expect("explain");
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan"), "{predicate}:\n{plan}");
    }
    let store = PgAgents::new(pool);
    let page = store
        .list(
            &AgentFilter {
                department: Some("dept-0".into()),
                ..Default::default()
            },
            None,
            500,
        )
        .await
        .expect("list");
    // dept-0 has i % 50 == 0 (all disabled, i % 10 == 0) and i % 50 == 49: 200 enabled.
    assert_eq!(page.len(), 200);
}
