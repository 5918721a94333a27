//! Harness of the gRPC tests: the real customer server, in-process, on its own database, and
//! helpers to build requests and read `google.rpc` error details.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tierline_customer::StartError;
use tierline_customer::config::Config;
use tierline_customer::store::CustomerStore;
use tierline_proto::common::{self, IdentityKind, IdentityRef, Money};
use tierline_proto::customer::customer_service_client::CustomerServiceClient;
use tierline_proto::customer::{self as pb};
use tierline_proto::tonic::{Code, Status, transport::Channel};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_types::StatusExt;

/// The generated client over a tonic channel.
pub type Client = CustomerServiceClient<Channel>;

/// A customer server running in this process until [`Server::stop`].
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    client: Client,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), StartError>>>,
}

impl Server {
    /// Starts the real server on `pool` with the default configuration.
    pub async fn start(pool: PgPool) -> Self {
        Self::start_with(pool, |_| {}).await
    }

    /// Starts the real server on `pool`, after `adjust` has changed the default configuration.
    pub async fn start_with(pool: PgPool, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::launch(adjust, |listener, config, shutdown| {
            tierline_customer::serve_with_pool(listener, config, pool, async move {
                let _ = shutdown.await;
            })
        })
        .await
    }

    /// Starts the real server over `store` (SQLite, say) with the default configuration.
    pub async fn start_on_store<S: CustomerStore>(store: Arc<S>) -> Self {
        Self::launch(
            |_| {},
            |listener, config, shutdown| {
                tierline_customer::serve_with_store(listener, config, store, async move {
                    let _ = shutdown.await;
                })
            },
        )
        .await
    }

    /// Binds an ephemeral port, spawns `serve` on it and connects the clients.
    async fn launch<F, Fut>(adjust: impl FnOnce(&mut Config), serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, Config, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = Result<(), StartError>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let mut config = Config::default();
        config.server.listen = addr;
        adjust(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config, rx));
        let client = CustomerServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect a generated client");
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect a channel");
        Server {
            addr,
            client,
            channel,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A customer-service client (clones share one HTTP/2 connection).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The shared connection, for the health and reflection clients.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown and waits for the server to drain and stop cleanly.
    pub async fn stop(mut self) {
        self.signal_shutdown();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stops within 30 s of the shutdown signal")
                .expect("server task does not panic");
            result.expect("server stops without error");
        }
    }
}

// ---- requests -------------------------------------------------------------------------------

/// A minimal valid profile.
pub fn profile(name: &str) -> pb::Customer {
    pb::Customer {
        display_name: name.to_owned(),
        ..Default::default()
    }
}

/// A phone identity as a client writes it.
pub fn phone(raw: &str) -> pb::Identity {
    pb::Identity {
        kind: IdentityKind::Phone as i32,
        value: raw.to_owned(),
        ..Default::default()
    }
}

/// An email identity as a client writes it.
pub fn email(raw: &str) -> pb::Identity {
    pb::Identity {
        kind: IdentityKind::Email as i32,
        value: raw.to_owned(),
        ..Default::default()
    }
}

/// A shared identity.
pub fn shared(mut identity: pb::Identity) -> pb::Identity {
    identity.shared = true;
    identity
}

/// A reference to a phone number, read in the default region.
pub fn phone_ref(raw: &str) -> IdentityRef {
    IdentityRef {
        kind: IdentityKind::Phone as i32,
        value: raw.to_owned(),
        region_code: String::new(),
    }
}

/// A reference to an email address.
pub fn email_ref(raw: &str) -> IdentityRef {
    IdentityRef {
        kind: IdentityKind::Email as i32,
        value: raw.to_owned(),
        region_code: String::new(),
    }
}

/// An amount in the reporting currency.
pub fn eur(units: i64) -> Money {
    Money {
        currency_code: "EUR".into(),
        units,
        nanos: 0,
    }
}

/// An amount in micro-units of the reporting currency.
pub fn eur_micros(micros: i64) -> Money {
    Money {
        currency_code: "EUR".into(),
        units: micros / 1_000_000,
        nanos: i32::try_from((micros % 1_000_000) * 1000).expect("nanos fit"),
    }
}

/// Micro-units of a wire amount.
pub fn micros(m: Option<&Money>) -> i64 {
    let m = m.expect("amount is set");
    m.units * 1_000_000 + i64::from(m.nanos / 1000)
}

/// Creates a customer with `profile` and `identities`.
pub async fn create(
    client: &mut Client,
    profile: pb::Customer,
    identities: Vec<pb::Identity>,
) -> pb::Customer {
    client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(profile),
            identities,
            idempotency_key: String::new(),
        })
        .await
        .expect("CreateCustomer")
        .into_inner()
}

/// Gets a customer.
pub async fn get(client: &mut Client, id: &str) -> pb::Customer {
    client
        .get_customer(pb::GetCustomerRequest { id: id.to_owned() })
        .await
        .expect("GetCustomer")
        .into_inner()
}

/// Ids of the customers holding an identity.
pub async fn lookup(client: &mut Client, identity: IdentityRef) -> Vec<String> {
    client
        .lookup_customers(pb::LookupCustomersRequest {
            identity: Some(identity),
        })
        .await
        .expect("LookupCustomers")
        .into_inner()
        .customers
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Every customer a list request returns, following page tokens; panics on a repeated token.
pub async fn list_all(
    client: &mut Client,
    mut request: pb::ListCustomersRequest,
) -> Vec<pb::Customer> {
    let mut all = Vec::new();
    let mut seen_tokens = std::collections::HashSet::new();
    loop {
        let page = client
            .list_customers(request.clone())
            .await
            .expect("ListCustomers")
            .into_inner();
        assert!(
            !page.customers.is_empty() || page.next_page_token.is_empty(),
            "an empty page with a next-page token"
        );
        all.extend(page.customers);
        if page.next_page_token.is_empty() {
            return all;
        }
        assert!(
            seen_tokens.insert(page.next_page_token.clone()),
            "page token repeated"
        );
        request.page_token = page.next_page_token;
    }
}

/// The wire value of a tier.
pub fn tier(t: common::Tier) -> i32 {
    t as i32
}

// ---- errors ---------------------------------------------------------------------------------

/// The `google.rpc.ErrorInfo` reason of a status.
pub fn reason(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
}

/// The fields named by a status's `google.rpc.BadRequest`.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Asserts `result` failed with INVALID_ARGUMENT naming `field` among its violations.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    let status = result.expect_err("the call must fail");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "expected INVALID_ARGUMENT naming {field}, got {status:?}"
    );
    let fields = violated_fields(&status);
    assert!(
        fields.iter().any(|f| f == field),
        "expected a violation of {field}, got {fields:?} ({status:?})"
    );
    assert_eq!(reason(&status).as_deref(), Some("INVALID_ARGUMENT"));
    status
}

/// Asserts `result` failed with `code` and the ErrorInfo `reason`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    expected_reason: &str,
) -> Status {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "unexpected status {status:?}");
    assert_eq!(
        reason(&status).as_deref(),
        Some(expected_reason),
        "unexpected reason in {status:?}"
    );
    status
}

/// The `google.rpc.PreconditionFailure` violation types of a status.
pub fn precondition_types(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .precondition_failure()
        .map(|p| p.violations.iter().map(|v| v.r#type.clone()).collect())
        .unwrap_or_default()
}
