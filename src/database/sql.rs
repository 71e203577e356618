//! [`Store`] over SQLite (the embedded default) and PostgreSQL, with one set of SQL.
//!
//! Timestamps are stored as milliseconds since the epoch and JSON as text, so the
//! statements are the same for both engines. The differences: leasing on PostgreSQL adds
//! `FOR UPDATE SKIP LOCKED` so that replicas never wait on each other's candidate rows
//! (SQLite serializes writers anyway), and the database's clock is read with each engine's
//! own expression. Leases and build heartbeats use the database's clock only.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

use super::deliveries::{record_in, DeliveryWriter};
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    engine: Engine,
    /// A SQLite file only: the group-commit writer for deliveries ([`super::deliveries`]).
    writer: Option<DeliveryWriter>,
    /// How far this process's clock is off, in milliseconds (see [`SqlStore::with_clock_skew`]).
    skew_ms: i64,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &self.engine)
            .finish()
    }
}

const JOB_COLUMNS: &str =
    "id, kind, repo, git_ref, sha, pr_number, dedup_key, payload, state, attempts, \
     lease_owner, lease_expires_at, cancel_requested, result, error, created_at, updated_at";

impl SqlStore {
    /// Connects to `sqlite://path` (created if missing) or `postgres://...`, and runs the
    /// migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = if url == "sqlite::memory:" {
            "sqlite://:memory:"
        } else {
            url
        };
        let mut sqlite_file = None;
        let (engine, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let (path, _) = path.split_once('?').unwrap_or((path, ""));
            if path != ":memory:" && !path.is_empty() {
                sqlite_file = Some(std::path::PathBuf::from(path));
                if let Some(dir) = Path::new(path).parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).with_context(|| {
                            format!("cannot create the database folder {}", dir.display())
                        })?;
                    }
                }
            }
            let url = if path == ":memory:" {
                "sqlite::memory:".to_string()
            } else if url.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            (Engine::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_string())
        } else {
            anyhow::bail!(
                "unsupported database URL {:?}: use sqlite://path/to/bakery.db or postgres://host/db",
                redact_url(url)
            );
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("invalid database URL {:?}", redact_url(&url)))?;
        let memory = url.contains(":memory:");
        let pool = AnyPoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers run beside the writer. NORMAL: a commit is in the
                        // WAL (the OS's page cache) when it returns, which survives the death
                        // of this process but not a power loss; the build journal guards
                        // against the first. Deliveries commit with FULL (`deliveries.rs`):
                        // GitHub does not send an answered delivery again.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 15000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the store at {}", redact_url(&url)))?;
        let mut store = SqlStore {
            pool,
            engine,
            writer: None,
            skew_ms: 0,
        };
        store.migrate().await?;
        // A file's deliveries go through the writer's own connection; an in-memory
        // database exists only on the pool's one connection.
        if let (Engine::Sqlite, Some(file), false) = (engine, &sqlite_file, memory) {
            store.writer = Some(
                DeliveryWriter::start(file)
                    .with_context(|| format!("cannot open the store at {}", redact_url(&url)))?,
            );
        }
        Ok(store)
    }

    /// This store as seen from a replica whose clock is `skew` ahead (negative: behind):
    /// for tests of replicas whose clocks disagree.
    pub fn with_clock_skew(mut self, skew: chrono::Duration) -> Self {
        self.skew_ms = skew.num_milliseconds();
        self
    }

    /// This process's clock, in milliseconds since the epoch.
    fn local_now_ms(&self) -> i64 {
        now_ms() + self.skew_ms
    }

    /// A private in-memory SQLite store, for tests.
    pub async fn open_sqlite_memory() -> anyhow::Result<Self> {
        Self::connect("sqlite://:memory:").await
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let scripts: [(i64, &'static str, &'static str, &'static str); 4] = [
            (
                1,
                "init",
                include_str!("../../migrations/sqlite/0001_init.sql"),
                include_str!("../../migrations/postgres/0001_init.sql"),
            ),
            (
                2,
                "liveness",
                include_str!("../../migrations/sqlite/0002_liveness.sql"),
                include_str!("../../migrations/postgres/0002_liveness.sql"),
            ),
            (
                3,
                "history",
                include_str!("../../migrations/sqlite/0003_history.sql"),
                include_str!("../../migrations/postgres/0003_history.sql"),
            ),
            (
                4,
                "inventory",
                include_str!("../../migrations/sqlite/0004_inventory.sql"),
                include_str!("../../migrations/postgres/0004_inventory.sql"),
            ),
        ];
        let migrations = scripts
            .into_iter()
            .map(|(version, name, sqlite, postgres)| {
                let sql = match self.engine {
                    Engine::Sqlite => sqlite,
                    Engine::Postgres => postgres,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .context("cannot migrate the store's schema")?;
        Ok(())
    }

    /// The database's clock in milliseconds since the epoch, as an SQL expression. Leases
    /// and heartbeats are written and compared with it, so replicas whose own clocks
    /// disagree still agree on who holds what.
    fn db_now(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS BIGINT)",
            Engine::Postgres => "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)",
        }
    }

    /// A transaction in which appends to one sequence (`key`: a build's journal, a job's
    /// log) are serialized across connections and replicas: on PostgreSQL by a
    /// transaction-scoped advisory lock (concurrent `MAX(seq) + 1` would collide); SQLite
    /// has one writer anyway.
    async fn serialized(
        &self,
        key: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    async fn job_by_id<'e, E>(&self, exec: E, id: JobId) -> anyhow::Result<Option<Job>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(exec)
            .await?;
        match row {
            Some(r) => Ok(Some(job_from_row(&r, vec![])?)),
            None => Ok(None),
        }
    }

    async fn attach_delivery_ids(&self, jobs: &mut [Job]) -> anyhow::Result<()> {
        for job in jobs.iter_mut() {
            let rows = sqlx::query(
                "SELECT delivery_id FROM deliveries WHERE job_id = $1 ORDER BY received_at, delivery_id",
            )
            .bind(job.id)
            .fetch_all(&self.pool)
            .await?;
            job.delivery_ids = rows
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
        }
        Ok(())
    }
}

fn redact_url(url: &str) -> String {
    // postgres://user:password@host/db → postgres://user:***@host/db
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.split_once('@') {
            if let Some((user, _)) = creds.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ts(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn json_col(r: &AnyRow, col: &str) -> anyhow::Result<serde_json::Value> {
    let text: String = r.try_get(col)?;
    serde_json::from_str(&text).with_context(|| format!("column {col} holds invalid JSON"))
}

fn opt_json_col(r: &AnyRow, col: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let text: Option<String> = r.try_get(col)?;
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .with_context(|| format!("column {col} holds invalid JSON"))
}

fn job_from_row(r: &AnyRow, delivery_ids: Vec<String>) -> anyhow::Result<Job> {
    Ok(Job {
        id: r.try_get("id")?,
        kind: JobKind::parse(&r.try_get::<String, _>("kind")?)?,
        repo: r.try_get("repo")?,
        git_ref: r.try_get("git_ref")?,
        sha: r.try_get("sha")?,
        pr_number: r.try_get("pr_number")?,
        dedup_key: r.try_get("dedup_key")?,
        payload: json_col(r, "payload")?,
        state: JobState::parse(&r.try_get::<String, _>("state")?)?,
        attempts: r.try_get("attempts")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires_at: r.try_get::<Option<i64>, _>("lease_expires_at")?.map(ts),
        cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
        result: opt_json_col(r, "result")?,
        error: r.try_get("error")?,
        delivery_ids,
        created_at: ts(r.try_get("created_at")?),
        updated_at: ts(r.try_get("updated_at")?),
    })
}

fn build_from_row(r: &AnyRow) -> anyhow::Result<BuildRecord> {
    Ok(BuildRecord {
        build_id: r.try_get("build_id")?,
        job_id: r.try_get("job_id")?,
        recipe: r.try_get("recipe")?,
        version: r.try_get("version")?,
        git_sha: r.try_get("git_sha")?,
        state: BuildState::parse(&r.try_get::<String, _>("state")?)?,
        plan: json_col(r, "plan")?,
        manifest: opt_json_col(r, "manifest")?,
        error: r.try_get("error")?,
        created_at: ts(r.try_get("created_at")?),
        updated_at: ts(r.try_get("updated_at")?),
    })
}

/// Whether an error is a unique-constraint violation (a racing insert of the same key):
/// by the driver's error kind (SQLite's extended code, PostgreSQL's SQLSTATE 23505),
/// never by the message.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

impl SqlStore {
    async fn record_delivery_once(
        &self,
        delivery: &NewDelivery,
        job: Option<&NewJob>,
    ) -> anyhow::Result<DeliveryOutcome> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("cannot start a transaction")?;
        let outcome = record_in(&mut tx, delivery, job, now_ms()).await?;
        tx.commit()
            .await
            .map_err(anyhow::Error::from)
            .context("cannot commit the delivery and its job")?;
        Ok(outcome)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("store is not reachable")?;
        Ok(())
    }

    async fn record_delivery(
        &self,
        delivery: &NewDelivery,
        job: Option<&NewJob>,
    ) -> anyhow::Result<DeliveryOutcome> {
        if let Some(writer) = &self.writer {
            return writer.record(delivery.clone(), job.cloned()).await;
        }
        match self.record_delivery_once(delivery, job).await {
            // Two deliveries for the same new job raced (PostgreSQL replicas): the loser's
            // transaction is gone, so try once more; it now finds the winner's job.
            Err(e)
                if e.downcast_ref::<sqlx::Error>()
                    .is_some_and(is_unique_violation) =>
            {
                self.record_delivery_once(delivery, job).await
            }
            other => other,
        }
    }

    async fn enqueue_job(&self, job: &NewJob) -> anyhow::Result<Option<JobId>> {
        let now = self.local_now_ms();
        if job.kind == JobKind::Release && !job.sha.is_empty() {
            // A tag's `create` job, queued or being peeled, is this tag's job: give it the
            // commit rather than enqueue a second one.
            let adopted = sqlx::query(
                "UPDATE jobs SET sha = $1, dedup_key = $2, payload = $3, updated_at = $4 \
                 WHERE id = (SELECT id FROM jobs WHERE kind = 'release' AND repo = $5 \
                             AND git_ref = $6 AND sha = '' AND state IN ('queued', 'running') \
                             ORDER BY id DESC LIMIT 1) \
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE dedup_key = $2)",
            )
            .bind(&job.sha)
            .bind(&job.dedup_key)
            .bind(job.payload.to_string())
            .bind(now)
            .bind(&job.repo)
            .bind(&job.git_ref)
            .execute(&self.pool)
            .await;
            match adopted {
                Ok(r) if r.rows_affected() > 0 => return Ok(None),
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Ok(None),
                Err(e) => return Err(e).context("cannot enqueue the job"),
            }
        }
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (kind, repo, git_ref, sha, pr_number, dedup_key, payload, state, \
             attempts, cancel_requested, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, 0, $8, $8) \
             ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
        )
        .bind(job.kind.as_str())
        .bind(&job.repo)
        .bind(&job.git_ref)
        .bind(&job.sha)
        .bind(job.pr_number)
        .bind(&job.dedup_key)
        .bind(job.payload.to_string())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .context("cannot enqueue the job")?;
        Ok(id)
    }

    async fn lease_next_job(&self, worker: &str, lease: Duration) -> anyhow::Result<Option<Job>> {
        let lock = match self.engine {
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            Engine::Sqlite => "",
        };
        let now = self.db_now();
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = {now} + $2, \
             attempts = attempts + 1, updated_at = {now} \
             WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                         OR (state = 'running' AND lease_expires_at < {now}) \
                         ORDER BY id LIMIT 1{lock}) \
             RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(lease.as_millis() as i64)
            .fetch_optional(&self.pool)
            .await
            .context("cannot lease a job")?;
        match row {
            Some(r) => {
                let mut jobs = vec![job_from_row(&r, vec![])?];
                self.attach_delivery_ids(&mut jobs).await?;
                Ok(jobs.pop())
            }
            None => Ok(None),
        }
    }

    async fn renew_lease(&self, job: JobId, worker: &str, lease: Duration) -> anyhow::Result<bool> {
        let now = self.db_now();
        let sql = format!(
            "UPDATE jobs SET lease_expires_at = {now} + $1, updated_at = {now} \
             WHERE id = $2 AND lease_owner = $3 AND state = 'running'"
        );
        let r = sqlx::query(AssertSqlSafe(sql))
            .bind(lease.as_millis() as i64)
            .bind(job)
            .bind(worker)
            .execute(&self.pool)
            .await
            .context("cannot renew a job's lease")?;
        Ok(r.rows_affected() == 1)
    }

    async fn finish_job(
        &self,
        job: JobId,
        worker: &str,
        outcome: &JobOutcome,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            outcome.state.is_finished() || outcome.state == JobState::Queued,
            "finish_job needs a finished state (or queued, to hand the job back), not {}",
            outcome.state.as_str()
        );
        // A job handed back is not an attempt used up: its lease took one.
        let given_back: i64 = (outcome.state == JobState::Queued).into();
        let sql = format!(
            "UPDATE jobs SET state = $1, result = $2, error = $3, lease_owner = NULL, \
             lease_expires_at = NULL, attempts = attempts - $4, updated_at = {} \
             WHERE id = $5 AND lease_owner = $6 AND state = 'running'",
            self.db_now()
        );
        let r = sqlx::query(AssertSqlSafe(sql))
            .bind(outcome.state.as_str())
            .bind(outcome.result.as_ref().map(|v| v.to_string()))
            .bind(outcome.error.as_deref())
            .bind(given_back)
            .bind(job)
            .bind(worker)
            .execute(&self.pool)
            .await
            .context("cannot finish the job")?;
        if r.rows_affected() != 1 {
            return Err(NotLeased {
                job,
                worker: worker.to_string(),
            }
            .into());
        }
        Ok(())
    }

    async fn resolve_job_commit(
        &self,
        job: JobId,
        sha: &str,
        dedup_key: &str,
        payload: &serde_json::Value,
    ) -> anyhow::Result<ResolvedCommit> {
        let holder = || async {
            sqlx::query_scalar::<_, i64>("SELECT id FROM jobs WHERE dedup_key = $1 AND id <> $2")
                .bind(dedup_key)
                .bind(job)
                .fetch_optional(&self.pool)
                .await
        };
        if let Some(other) = holder().await? {
            return Ok(ResolvedCommit::Duplicate(other));
        }
        let updated = sqlx::query(
            "UPDATE jobs SET sha = $1, dedup_key = $2, payload = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(sha)
        .bind(dedup_key)
        .bind(payload.to_string())
        .bind(now_ms())
        .bind(job)
        .execute(&self.pool)
        .await;
        match updated {
            Ok(_) => Ok(ResolvedCommit::Recorded),
            // A delivery took the key between the check and the update.
            Err(e) if is_unique_violation(&e) => match holder().await? {
                Some(other) => Ok(ResolvedCommit::Duplicate(other)),
                None => Err(e).context("cannot record the job's commit"),
            },
            Err(e) => Err(e).context("cannot record the job's commit"),
        }
    }

    async fn request_cancel(&self, job: JobId) -> anyhow::Result<()> {
        let now = self.local_now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND state = 'running'",
        )
        .bind(now)
        .bind(job)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, updated_at = $1 \
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(job)
        .execute(&mut *tx)
        .await?;
        tx.commit().await.context("cannot cancel the job")?;
        Ok(())
    }

    async fn get_job(&self, job: JobId) -> anyhow::Result<Option<Job>> {
        let Some(j) = self.job_by_id(&self.pool, job).await? else {
            return Ok(None);
        };
        let mut jobs = vec![j];
        self.attach_delivery_ids(&mut jobs).await?;
        Ok(jobs.pop())
    }

    async fn list_jobs(&self, filter: &JobFilter) -> anyhow::Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs \
             WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR repo = $3) \
             ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(filter.kind.map(|k| k.as_str()))
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.repo.as_deref())
            .bind(filter.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .context("cannot list jobs")?;
        let mut jobs = rows
            .iter()
            .map(|r| job_from_row(r, vec![]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.attach_delivery_ids(&mut jobs).await?;
        Ok(jobs)
    }

    async fn append_job_log(&self, job: JobId, step: &str, message: &str) -> anyhow::Result<()> {
        for attempt in 0..5 {
            let r = async {
                let mut tx = self.serialized(&format!("job_log:{job}")).await?;
                sqlx::query(
                    "INSERT INTO job_log (job_id, seq, at, step, message) \
                     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM job_log WHERE job_id = $1",
                )
                .bind(job)
                .bind(self.local_now_ms())
                .bind(step)
                .bind(message)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            .await;
            match r {
                Ok(_) => return Ok(()),
                Err(e) if is_unique_violation(&e) && attempt < 4 => continue,
                Err(e) => return Err(e).context("cannot append to the job log"),
            }
        }
        unreachable!("the loop returns")
    }

    async fn job_log(&self, job: JobId) -> anyhow::Result<Vec<JobLogEntry>> {
        self.job_log_page(job, 0, i64::MAX).await
    }

    async fn append_job_log_batch(
        &self,
        job: JobId,
        lines: &[(String, String)],
    ) -> anyhow::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        for attempt in 0..5 {
            let r = async {
                let mut tx = self.pool.begin().await?;
                let at = now_ms();
                for (step, message) in lines {
                    sqlx::query(
                        "INSERT INTO job_log (job_id, seq, at, step, message) \
                         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM job_log WHERE job_id = $1",
                    )
                    .bind(job)
                    .bind(at)
                    .bind(step.as_str())
                    .bind(message.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            }
            .await;
            match r {
                Ok(()) => return Ok(()),
                Err(e) if is_unique_violation(&e) && attempt < 4 => continue,
                Err(e) => return Err(e).context("cannot append to the job log"),
            }
        }
        unreachable!("the loop returns")
    }

    async fn job_log_page(
        &self,
        job: JobId,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<JobLogEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, step, message FROM job_log WHERE job_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(job)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("cannot read the job log")?;
        rows.iter()
            .map(|r| {
                Ok(JobLogEntry {
                    seq: r.try_get("seq")?,
                    at: ts(r.try_get("at")?),
                    step: r.try_get("step")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    async fn delete_finished_job_logs(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        let r = sqlx::query(
            "DELETE FROM job_log WHERE job_id IN (SELECT id FROM jobs \
             WHERE state IN ('succeeded', 'failed', 'cancelled') AND updated_at < $1)",
        )
        .bind(cutoff.timestamp_millis())
        .execute(&self.pool)
        .await
        .context("cannot delete old job logs")?;
        Ok(r.rows_affected())
    }

    async fn upsert_build(&self, b: &BuildRecord) -> anyhow::Result<()> {
        let sql = format!(
            "INSERT INTO builds (build_id, job_id, recipe, version, git_sha, state, plan, manifest, error, created_at, updated_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {}) \
             ON CONFLICT (build_id) DO UPDATE SET job_id = excluded.job_id, state = excluded.state, \
             plan = excluded.plan, manifest = excluded.manifest, error = excluded.error, \
             updated_at = excluded.updated_at, heartbeat_at = excluded.heartbeat_at",
            self.db_now()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&b.build_id)
            .bind(b.job_id)
            .bind(&b.recipe)
            .bind(&b.version)
            .bind(&b.git_sha)
            .bind(b.state.as_str())
            .bind(b.plan.to_string())
            .bind(b.manifest.as_ref().map(|m| m.to_string()))
            .bind(b.error.as_deref())
            .bind(b.created_at.timestamp_millis())
            .bind(self.local_now_ms())
            .execute(&self.pool)
            .await
            .with_context(|| format!("cannot save build {}", b.build_id))?;
        Ok(())
    }

    async fn heartbeat_build(&self, build_id: &str) -> anyhow::Result<bool> {
        let sql = format!(
            "UPDATE builds SET heartbeat_at = {} WHERE build_id = $1 AND state = 'running'",
            self.db_now()
        );
        let r = sqlx::query(AssertSqlSafe(sql))
            .bind(build_id)
            .execute(&self.pool)
            .await
            .with_context(|| format!("cannot record the heartbeat of build {build_id}"))?;
        Ok(r.rows_affected() == 1)
    }

    async fn build_heartbeat_age(&self, build_id: &str) -> anyhow::Result<Option<Duration>> {
        let sql = format!(
            "SELECT {} - COALESCE(heartbeat_at, updated_at) FROM builds WHERE build_id = $1",
            self.db_now()
        );
        let age: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(build_id)
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("cannot read the heartbeat of build {build_id}"))?;
        Ok(age.map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }

    async fn claim_periodic(
        &self,
        task: &str,
        runner: &str,
        period: Duration,
    ) -> anyhow::Result<bool> {
        // A tenth of the period is left for replicas whose timers drift.
        let gap = (period.as_millis() as i64) * 9 / 10;
        let now = self.db_now();
        let sql = format!(
            "INSERT INTO periodic_runs (task, last_run_at, runner, runs) VALUES ($1, {now}, $2, 1) \
             ON CONFLICT (task) DO UPDATE SET last_run_at = excluded.last_run_at, \
             runner = excluded.runner, runs = periodic_runs.runs + 1 \
             WHERE periodic_runs.last_run_at <= excluded.last_run_at - $3"
        );
        let r = sqlx::query(AssertSqlSafe(sql))
            .bind(task)
            .bind(runner)
            .bind(gap)
            .execute(&self.pool)
            .await
            .with_context(|| format!("cannot claim the periodic task {task}"))?;
        Ok(r.rows_affected() == 1)
    }

    async fn repo_history(&self, repo: &str) -> anyhow::Result<Option<RepoHistory>> {
        let first: Option<i64> =
            sqlx::query_scalar("SELECT first_seen_at FROM repositories WHERE repo = $1")
                .bind(repo)
                .fetch_optional(&self.pool)
                .await
                .with_context(|| format!("cannot read when {repo} was first seen"))?;
        let Some(first) = first else {
            return Ok(None);
        };
        let rows = sqlx::query("SELECT tag, sha FROM repository_history WHERE repo = $1")
            .bind(repo)
            .fetch_all(&self.pool)
            .await
            .with_context(|| format!("cannot read the tag history of {repo}"))?;
        let tags = rows
            .iter()
            .map(|r| Ok((r.try_get("tag")?, r.try_get("sha")?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(RepoHistory {
            first_seen_at: ts(first),
            tags,
        }))
    }

    async fn record_repo_history(
        &self,
        repo: &str,
        tags: &[(String, String)],
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "INSERT INTO repositories (repo, first_seen_at) VALUES ($1, {}) \
             ON CONFLICT (repo) DO NOTHING",
            self.db_now()
        );
        let first = sqlx::query(AssertSqlSafe(sql))
            .bind(repo)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("cannot record {repo} as seen"))?;
        if first.rows_affected() == 0 {
            return Ok(false);
        }
        for (tag, sha) in tags {
            sqlx::query(
                "INSERT INTO repository_history (repo, tag, sha) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo, tag, sha) DO NOTHING",
            )
            .bind(repo)
            .bind(tag)
            .bind(sha)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("cannot record the tag history of {repo}"))?;
        }
        tx.commit()
            .await
            .with_context(|| format!("cannot record the tag history of {repo}"))?;
        Ok(true)
    }

    async fn periodic_runs(&self) -> anyhow::Result<Vec<PeriodicRun>> {
        let rows =
            sqlx::query("SELECT task, last_run_at, runner, runs FROM periodic_runs ORDER BY task")
                .fetch_all(&self.pool)
                .await
                .context("cannot read the periodic runs")?;
        rows.iter()
            .map(|r| {
                Ok(PeriodicRun {
                    task: r.try_get("task")?,
                    last_run_at: ts(r.try_get("last_run_at")?),
                    runner: r.try_get("runner")?,
                    runs: r.try_get("runs")?,
                })
            })
            .collect()
    }

    async fn get_build(&self, build_id: &str) -> anyhow::Result<Option<BuildRecord>> {
        let row = sqlx::query("SELECT * FROM builds WHERE build_id = $1")
            .bind(build_id)
            .fetch_optional(&self.pool)
            .await
            .context("cannot read the build")?;
        row.as_ref().map(build_from_row).transpose()
    }

    async fn list_builds(&self, filter: &BuildFilter) -> anyhow::Result<Vec<BuildRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM builds WHERE ($1 IS NULL OR recipe = $1) AND ($2 IS NULL OR version = $2) \
             AND ($3 IS NULL OR state = $3) ORDER BY created_at, build_id",
        )
        .bind(filter.recipe.as_deref())
        .bind(filter.version.as_deref())
        .bind(filter.state.map(|s| s.as_str()))
        .fetch_all(&self.pool)
        .await
        .context("cannot list builds")?;
        rows.iter().map(build_from_row).collect()
    }

    async fn put_inventory(&self, build_id: &str, collected: &Collected) -> anyhow::Result<()> {
        let text = serde_json::to_string(collected)?;
        sqlx::query(
            "INSERT INTO build_inventories (build_id, collected, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (build_id) DO UPDATE SET collected = excluded.collected, created_at = excluded.created_at",
        )
        .bind(build_id)
        .bind(text)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .context("cannot store the build's inventory")?;
        Ok(())
    }

    async fn inventory(&self, build_id: &str) -> anyhow::Result<Option<Collected>> {
        let row = sqlx::query("SELECT collected FROM build_inventories WHERE build_id = $1")
            .bind(build_id)
            .fetch_optional(&self.pool)
            .await
            .context("cannot read the build's inventory")?;
        row.map(|r| {
            let text: String = r.try_get("collected")?;
            serde_json::from_str(&text).context("the stored inventory is not readable")
        })
        .transpose()
    }

    async fn append_journal(&self, build_id: &str, entry: &JournalEntry) -> anyhow::Result<i64> {
        for attempt in 0..5 {
            let r: Result<i64, _> = async {
                let mut tx = self.serialized(&format!("journal:{build_id}")).await?;
                let seq = sqlx::query_scalar(
                    "INSERT INTO build_journal (build_id, seq, at, kind, data) \
                     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM build_journal WHERE build_id = $1 \
                     RETURNING seq",
                )
                .bind(build_id)
                .bind(self.local_now_ms())
                .bind(&entry.kind)
                .bind(entry.data.to_string())
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(seq)
            }
            .await;
            match r {
                Ok(seq) => return Ok(seq),
                Err(e) if is_unique_violation(&e) && attempt < 4 => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot write the journal of build {build_id}"))
                }
            }
        }
        unreachable!("the loop returns")
    }

    async fn journal(&self, build_id: &str) -> anyhow::Result<Vec<StoredJournalEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, data FROM build_journal WHERE build_id = $1 ORDER BY seq",
        )
        .bind(build_id)
        .fetch_all(&self.pool)
        .await
        .with_context(|| format!("cannot read the journal of build {build_id}"))?;
        rows.iter()
            .map(|r| {
                Ok(StoredJournalEntry {
                    seq: r.try_get("seq")?,
                    at: ts(r.try_get("at")?),
                    kind: r.try_get("kind")?,
                    data: json_col(r, "data")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A racing insert of the same key is told apart by the driver's error kind, whatever
    /// the message says.
    #[tokio::test]
    async fn a_duplicate_key_is_a_unique_violation_by_kind() {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, u TEXT UNIQUE)")
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('a', 'x')")
            .execute(&mut db)
            .await
            .unwrap();
        for dup in [
            "INSERT INTO t VALUES ('a', 'y')",
            "INSERT INTO t VALUES ('b', 'x')",
        ] {
            let err = sqlx::query(dup).execute(&mut db).await.unwrap_err();
            assert!(is_unique_violation(&err), "{dup}: {err}");
        }
        let other = sqlx::query("INSERT INTO nowhere VALUES (1)")
            .execute(&mut db)
            .await
            .unwrap_err();
        assert!(!is_unique_violation(&other), "{other}");
    }
}
