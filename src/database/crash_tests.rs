//! The journal's promise under `synchronous = NORMAL`: an entry whose append returned is in
//! the store even if the process is killed (`kill -9`) right after. The test runs itself as
//! a child process that appends entries to a SQLite file in a temporary directory and
//! reports each acknowledged one; it touches nothing else.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::{JournalEntry, SqlStore, Store};

const CHILD_ENV: &str = "BAKERY_TEST_JOURNAL_CHILD_DB";
const BUILD: &str = "crash-build";

/// In the child: appends entries forever, printing each acknowledged sequence number.
async fn child(db: &str) {
    let store = SqlStore::connect(db).await.unwrap();
    for i in 0.. {
        let entry = JournalEntry {
            kind: "created".into(),
            data: serde_json::json!({ "id": format!("sg-{i:08}") }),
        };
        let seq = store.append_journal(BUILD, &entry).await.unwrap();
        println!("acked {seq}");
    }
}

#[tokio::test]
async fn a_killed_process_loses_no_acknowledged_journal_entry() {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        child(&db).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bakery.db").display());
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "database::crash_tests::a_killed_process_loses_no_acknowledged_journal_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let mut last_acked = 0i64;
    while last_acked < 200 {
        let line = lines
            .next()
            .expect("the child stopped before 200 entries")
            .unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            last_acked = n.parse().unwrap();
        }
    }
    proc.kill().unwrap(); // SIGKILL, in the middle of the next appends
    proc.wait().unwrap();

    let store = SqlStore::connect(&db).await.unwrap();
    let journal = store.journal(BUILD).await.unwrap();
    let seqs: Vec<i64> = journal.iter().map(|e| e.seq).collect();
    assert!(
        journal.len() as i64 >= last_acked,
        "acknowledged {last_acked} entries, the store has {}",
        journal.len()
    );
    assert_eq!(
        seqs,
        (1..=journal.len() as i64).collect::<Vec<_>>(),
        "no gap in the journal"
    );
}
