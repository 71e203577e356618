//! Intake's writes: a delivery's row and, in the same transaction, the job it asks for.
//! Touches the `deliveries` and `jobs` tables only.
//!
//! [`record_in`] decides, once for every engine, over the statements intake
//! needs ([`IntakeTx`]). On PostgreSQL (and an in-memory SQLite) they run through sqlx.
//! A SQLite file's deliveries go to the [`DeliveryWriter`]: one thread that owns a
//! connection of its own through SQLite's C API (rusqlite), with `synchronous = FULL` set
//! once for the connection's life and every statement prepared once and cached. Deliveries
//! that arrive together share one transaction and one fsync ("group commit"), each is
//! answered only once that commit has returned, and no statement crosses a thread.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use rusqlite::OptionalExtension;

use super::{DeliveryOutcome, JobKind, NewDelivery, NewJob};

/// Release jobs for a tag whose `create` event arrived without a SHA are merged with the
/// tag's `push` if both arrive within this window.
const CREATE_PUSH_MERGE_WINDOW_MS: i64 = 10 * 60 * 1000;

/// A bound value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Param<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
}

/// The statements intake runs, inside a transaction the caller holds.
pub(super) trait IntakeTx {
    /// A statement whose answer is at most one row of one integer column.
    async fn optional_int(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> anyhow::Result<Option<i64>>;
    /// A statement without an answer: the same call, which runs it and finds no row.
    async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> anyhow::Result<()> {
        self.optional_int(sql, params).await.map(drop)
    }
}

const INSERT_DELIVERY: &str =
    "INSERT INTO deliveries (delivery_id, event, summary, job_id, received_at) \
     VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (delivery_id) DO NOTHING RETURNING 1";
const CREATE_JOB_IN_WINDOW: &str = "SELECT id FROM jobs WHERE kind = 'release' AND repo = $1 \
     AND git_ref = $2 AND created_at >= $3 ORDER BY id DESC LIMIT 1";
const JOB_BY_KEY: &str = "SELECT id FROM jobs WHERE dedup_key = $1";
const PENDING_CREATE_JOB: &str = "SELECT id FROM jobs WHERE kind = 'release' AND repo = $1 \
     AND git_ref = $2 AND sha = '' AND state IN ('queued', 'running') ORDER BY id DESC LIMIT 1";
const GIVE_COMMIT: &str =
    "UPDATE jobs SET sha = $1, dedup_key = $2, payload = $3, updated_at = $4 WHERE id = $5";
const INSERT_JOB: &str = "INSERT INTO jobs (kind, repo, git_ref, sha, pr_number, dedup_key, \
     payload, state, attempts, cancel_requested, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, 0, $8, $8) RETURNING id";
const ATTACH_DELIVERY: &str = "UPDATE deliveries SET job_id = $1 WHERE delivery_id = $2";

/// Records a delivery and its job inside `tx` (see
/// [`Store::record_delivery`](super::Store::record_delivery)).
pub(super) async fn record_in(
    tx: &mut impl IntakeTx,
    delivery: &NewDelivery,
    job: Option<&NewJob>,
    now: i64,
) -> anyhow::Result<DeliveryOutcome> {
    use Param::{Int, OptInt, Text};
    // The delivery row goes first: a redelivery stops here.
    let inserted = tx
        .optional_int(
            INSERT_DELIVERY,
            &[
                Text(&delivery.delivery_id),
                Text(&delivery.event),
                Text(&delivery.summary),
                Int(now),
            ],
        )
        .await
        .context("cannot record the delivery")?;
    if inserted.is_none() {
        return Ok(DeliveryOutcome::Duplicate);
    }
    let Some(job) = job else {
        return Ok(DeliveryOutcome::Recorded);
    };

    let existing = if job.kind == JobKind::Release && job.sha.is_empty() {
        // A tag's `create` carries no SHA: it belongs with the tag's `push`.
        let since = now - CREATE_PUSH_MERGE_WINDOW_MS;
        tx.optional_int(
            CREATE_JOB_IN_WINDOW,
            &[Text(&job.repo), Text(&job.git_ref), Int(since)],
        )
        .await?
    } else {
        match tx.optional_int(JOB_BY_KEY, &[Text(&job.dedup_key)]).await? {
            Some(id) => Some(id),
            None if job.kind == JobKind::Release => {
                // A `create` came first: give its job the SHA from this push, whether it
                // is still queued or a worker is peeling the tag right now (the worker
                // then records the same commit under the same key).
                let pending = tx
                    .optional_int(PENDING_CREATE_JOB, &[Text(&job.repo), Text(&job.git_ref)])
                    .await?;
                if let Some(id) = pending {
                    let payload = job.payload.to_string();
                    tx.execute(
                        GIVE_COMMIT,
                        &[
                            Text(&job.sha),
                            Text(&job.dedup_key),
                            Text(&payload),
                            Int(now),
                            Int(id),
                        ],
                    )
                    .await?;
                }
                pending
            }
            None => None,
        }
    };

    let outcome = match existing {
        Some(id) => DeliveryOutcome::Merged(id),
        None => {
            let payload = job.payload.to_string();
            let id = tx
                .optional_int(
                    INSERT_JOB,
                    &[
                        Text(job.kind.as_str()),
                        Text(&job.repo),
                        Text(&job.git_ref),
                        Text(&job.sha),
                        OptInt(job.pr_number),
                        Text(&job.dedup_key),
                        Text(&payload),
                        Int(now),
                    ],
                )
                .await
                .context("cannot enqueue the job")?
                .context("the job's insert returned no id")?;
            DeliveryOutcome::Created(id)
        }
    };
    let (DeliveryOutcome::Created(job_id) | DeliveryOutcome::Merged(job_id)) = outcome else {
        unreachable!("a job outcome")
    };
    tx.execute(ATTACH_DELIVERY, &[Int(job_id), Text(&delivery.delivery_id)])
        .await?;
    Ok(outcome)
}

/// The statements through sqlx, on PostgreSQL or SQLite.
impl IntakeTx for sqlx::Transaction<'_, sqlx::Any> {
    async fn optional_int(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> anyhow::Result<Option<i64>> {
        let mut query = sqlx::query_scalar::<_, i64>(sql);
        for p in params {
            query = match *p {
                Param::Int(v) => query.bind(v),
                Param::OptInt(v) => query.bind(v),
                Param::Text(v) => query.bind(v),
            };
        }
        Ok(query.fetch_optional(&mut **self).await?)
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Int(v) => v.to_sql(),
            Param::OptInt(v) => v.to_sql(),
            Param::Text(v) => v.to_sql(),
        }
    }
}

/// The statements through SQLite's C API, on the writer's thread. They never wait on
/// anything but SQLite, so their futures are ready at the first poll.
impl IntakeTx for rusqlite::Transaction<'_> {
    async fn optional_int(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> anyhow::Result<Option<i64>> {
        let mut statement = self.prepare_cached(sql)?;
        Ok(statement
            .query_row(rusqlite::params_from_iter(params), |row| row.get(0))
            .optional()?)
    }
}

/// SQLite allows one writer at a time. Deliveries arriving together are written by one
/// thread in one transaction, with one fsync, and each is answered only once that
/// transaction is committed. Without it, concurrent deliveries wait on SQLite's busy
/// handler, which sleeps and retries.
#[derive(Clone)]
pub(super) struct DeliveryWriter {
    tx: tokio::sync::mpsc::Sender<WriteRequest>,
}

type WriteRequest = (
    NewDelivery,
    Option<NewJob>,
    tokio::sync::oneshot::Sender<anyhow::Result<DeliveryOutcome>>,
);

/// Deliveries committed together at most.
const GROUP_COMMIT_MAX: usize = 128;

impl DeliveryWriter {
    /// Opens the writer's own connection to the SQLite file at `path` (whose schema is
    /// migrated) and starts the writer's thread, which ends when the last handle is dropped.
    pub(super) fn start(path: &Path) -> anyhow::Result<Self> {
        let mut conn = rusqlite::Connection::open(path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "the store's journal mode is {mode}, not WAL"
        );
        // FULL: the WAL is fsynced at every commit, so an answered delivery survives a
        // power loss. GitHub does not send an answered delivery again.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(15))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteRequest>(4096);
        std::thread::Builder::new()
            .name("bakery-intake".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < GROUP_COMMIT_MAX {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    write_batch(&mut conn, batch);
                }
            })
            .context("cannot start the store's intake writer")?;
        Ok(DeliveryWriter { tx })
    }

    pub(super) async fn record(
        &self,
        delivery: NewDelivery,
        job: Option<NewJob>,
    ) -> anyhow::Result<DeliveryOutcome> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send((delivery, job, done))
            .await
            .map_err(|_| anyhow::anyhow!("the store's writer has stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("the store's writer stopped before committing"))?
    }
}

/// Commits `batch` in one transaction. When one delivery spoils it, each is written on its
/// own, so only that one fails.
fn write_batch(conn: &mut rusqlite::Connection, batch: Vec<WriteRequest>) {
    match commit(conn, &batch, super::sql::now_ms()) {
        Ok(outcomes) => {
            for ((_, _, done), outcome) in batch.into_iter().zip(outcomes) {
                let _ = done.send(Ok(outcome));
            }
        }
        Err(_) => {
            for request in batch {
                let one = commit(conn, std::slice::from_ref(&request), super::sql::now_ms())
                    .map(|mut outcomes| outcomes.remove(0));
                let _ = request.2.send(one);
            }
        }
    }
}

/// Records `requests` in one transaction, which takes SQLite's write lock at its start.
fn commit(
    conn: &mut rusqlite::Connection,
    requests: &[WriteRequest],
    now: i64,
) -> anyhow::Result<Vec<DeliveryOutcome>> {
    let mut tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .context("cannot start a transaction")?;
    let mut outcomes = Vec::with_capacity(requests.len());
    for (delivery, job, _) in requests {
        let recorded = record_in(&mut tx, delivery, job.as_ref(), now)
            .now_or_never()
            .expect("SQLite's statements do not wait");
        outcomes.push(recorded?);
    }
    tx.commit()
        .context("cannot commit the delivery and its job")?;
    Ok(outcomes)
}
