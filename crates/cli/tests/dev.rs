//! The README's first run, end to end: `tierline dev` (the real binary, no PostgreSQL or Redis:
//! it is given no address of either) starts the three services with the demo data, and the
//! `tierline` client walks a complaint from `ivr call` to an agent's accept and resolve. The
//! data survives a restart; the demo is loaded only into a new data directory.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use support::{Desktop, Finished, field};

/// A free local port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `tierline dev` running as a child process, and what it printed so far.
struct DevMode {
    child: Child,
    printed: Arc<Mutex<String>>,
    ports: [u16; 3],
}

impl DevMode {
    async fn start(data_dir: &std::path::Path, ports: [u16; 3]) -> DevMode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tierline"))
            .arg("dev")
            .arg("--data-dir")
            .arg(data_dir)
            .env(
                "TIERLINE_CUSTOMER__SERVER__LISTEN",
                format!("127.0.0.1:{}", ports[0]),
            )
            .env(
                "TIERLINE_TICKET__SERVER__LISTEN",
                format!("127.0.0.1:{}", ports[1]),
            )
            .env(
                "TIERLINE_ROUTING__SERVER__LISTEN",
                format!("127.0.0.1:{}", ports[2]),
            )
            .env("TIERLINE_TELEMETRY__LOG_FILTER", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("tierline dev starts");
        let printed = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        {
            let printed = printed.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut p = printed.lock().expect("lock");
                    p.push_str(&line);
                    p.push('\n');
                }
            });
        }
        let dev = DevMode {
            child,
            printed,
            ports,
        };
        // The banner ends with how to stop it, printed once every service is ready.
        for _ in 0..600 {
            if dev.printed().contains("Ctrl-C stops.") {
                return dev;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tierline dev did not get ready: {}", dev.printed());
    }

    fn printed(&self) -> String {
        self.printed.lock().expect("lock").clone()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tierline"));
        c.args(args)
            .env(
                "TIERLINE_CUSTOMER_ADDR",
                format!("http://127.0.0.1:{}", self.ports[0]),
            )
            .env(
                "TIERLINE_TICKET_ADDR",
                format!("http://127.0.0.1:{}", self.ports[1]),
            )
            .env(
                "TIERLINE_ROUTING_ADDR",
                format!("http://127.0.0.1:{}", self.ports[2]),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(Duration::from_secs(20), self.command(args).output())
            .await
            .expect("tierline finished in time")
            .expect("tierline ran");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tierline {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// SIGTERM, and a clean exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("pid").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("tierline dev stopped in time")
            .expect("exit status");
        assert!(status.success(), "tierline dev exited with {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dev_mode_takes_a_call_to_an_agent_and_keeps_it_across_a_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().join("data");
    let ports = [free_port(), free_port(), free_port()];
    let dev = DevMode::start(&data_dir, ports).await;

    // The banner: where each service listens, and demo customers of every tier.
    let banner = dev.printed();
    for (name, port) in ["customer-profile", "ticket", "routing"].iter().zip(ports) {
        assert!(
            banner.contains(&format!("http://127.0.0.1:{port}")) && banner.contains(name),
            "{banner}"
        );
    }
    for tier in ["tier A", "tier B", "tier C"] {
        assert!(banner.contains(tier), "demo customers in {tier}: {banner}");
    }
    assert!(
        banner.contains("Okafor Holdings") && banner.contains("key account (manager maria)"),
        "{banner}"
    );

    // The README's walk: an agent's desktop, then the IVR call.
    let desktop = Desktop::start(
        dev.command(&["agent", "desktop", "sam", "--available"]),
        b"accept\nresolve Refunded the second charge\nquit\n",
    )
    .await;

    let call = dev
        .ok(&[
            "ivr",
            "call",
            "--from",
            "+44 20 7946 0103",
            "--category",
            "billing",
            "charged twice",
        ])
        .await;
    assert!(call.contains("Ada Lovelace · tier B"), "{call}");
    let number = field(&call, "ticket").expect("ticket number").to_owned();
    assert_eq!(field(&call, "department"), Some("customer_service"));

    let Finished {
        status,
        shown,
        errors,
    } = desktop.finish().await;
    assert_eq!(status.code(), Some(0), "desktop:\n{shown}\n{errors}");
    assert!(
        shown.contains(&format!("offer     {number}")),
        "the offer is shown: {shown}"
    );
    assert!(
        shown.contains(&format!("accepted  assigned {number} to sam")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("resolved  {number} RESOLVED by sam")),
        "{shown}"
    );
    let stats = dev.ok(&["queue", "stats"]).await;
    assert!(stats.contains("customer_service"), "{stats}");
    dev.stop().await;

    // Restarted on the same directory: the ticket is there, the demo is not loaded again.
    let dev = DevMode::start(&data_dir, ports).await;
    assert!(
        dev.printed().contains("as left at the last run"),
        "{}",
        dev.printed()
    );
    let got = dev.ok(&["ticket", "get", &number]).await;
    assert_eq!(
        field(&got, "state").map(|s| s.starts_with("RESOLVED")),
        Some(true),
        "{got}"
    );
    dev.stop().await;
}
