//! What the CLI's end-to-end tests share: a `tierline agent desktop` child process fed its
//! commands up front and read as it prints, and reading a labelled field of human output.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The value after `label` on the first line that starts with it.
pub fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
}

/// A desktop process, its commands written and its input closed, connected and available.
pub struct Desktop {
    child: Child,
    seen: Arc<Mutex<String>>,
    reader: JoinHandle<()>,
    errors: JoinHandle<String>,
}

/// How a desktop ended.
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on standard output.
    pub shown: String,
    /// Everything it printed on standard error.
    pub errors: String,
}

impl Desktop {
    /// Starts `command` (a `tierline agent desktop ... --available`), writes `input` to it and
    /// waits until it shows its session as available.
    pub async fn start(mut command: Command, input: &[u8]) -> Desktop {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("desktop starts");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).await.expect("commands written");
        drop(stdin);
        let seen = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let reader = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut s = seen.lock().expect("lock");
                    s.push_str(&line);
                    s.push('\n');
                }
            })
        };
        let mut stderr = child.stderr.take().expect("stderr");
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let desktop = Desktop {
            child,
            seen,
            reader,
            errors,
        };
        for _ in 0..100 {
            if desktop.shown().contains("presence  available") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            desktop.shown().contains("session   "),
            "the desktop did not connect: {}",
            desktop.shown()
        );
        desktop
    }

    /// What it printed so far.
    pub fn shown(&self) -> String {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits (at most 20 s) for it to work through its commands and exit.
    pub async fn finish(mut self) -> Finished {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the desktop finished its commands in time")
            .expect("desktop exit status");
        let _ = (&mut self.reader).await;
        let shown = self.shown();
        Finished {
            status,
            shown,
            errors: self.errors.await.expect("stderr read"),
        }
    }
}
