//! Stores for tests: a fresh SQLite file, or a fresh PostgreSQL database on the local
//! server (127.0.0.1:5432, trust auth), dropped when the test ends.

use std::sync::Arc;

use bakery::database::{DynStore, SqlStore};

pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestStore {
    pub store: DynStore,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_db: Option<String>,
}

impl TestStore {
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bakery.db", dir.path().display());
        let store = SqlStore::connect(&url).await.expect("open SQLite store");
        TestStore {
            store: Arc::new(store),
            url,
            _dir: Some(dir),
            pg_db: None,
        }
    }

    pub async fn postgres() -> TestStore {
        let name = format!("bakery_test_{}", uuid::Uuid::new_v4().simple());
        admin_exec(&format!("CREATE DATABASE {name}")).await;
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let store = SqlStore::connect(&url)
            .await
            .expect("open PostgreSQL store (is PostgreSQL running on 127.0.0.1:5432?)");
        TestStore {
            store: Arc::new(store),
            url,
            _dir: None,
            pg_db: Some(name),
        }
    }
}

async fn admin_exec(sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL)
        .await
        .expect("connect to PostgreSQL on 127.0.0.1:5432 (database test)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(db) = self.pg_db.take() {
            // Best effort, on a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}
