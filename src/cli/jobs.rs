use std::process::ExitCode;

use super::{ConfigArgs, OutputFormat};
use crate::config::ServerConfig;
use crate::database::{Job, JobFilter, JobState, SqlStore, Store};

#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    /// Only jobs of this repository (`owner/name`).
    #[arg(long)]
    pub repo: Option<String>,
}

pub async fn run(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    let store = SqlStore::connect(config.database_url.expose()).await?;
    let filter = JobFilter {
        state: args.state.as_deref().map(JobState::parse).transpose()?,
        repo: args.repo,
        ..Default::default()
    };
    let jobs = store.list_jobs(&filter).await?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&jobs_json(&jobs))?),
        OutputFormat::Text => print!("{}", jobs_table(&jobs)),
    }
    Ok(ExitCode::SUCCESS)
}

fn jobs_json(jobs: &[Job]) -> serde_json::Value {
    serde_json::Value::Array(
        jobs.iter()
            .map(|j| {
                serde_json::json!({
                    "id": j.id,
                    "kind": j.kind,
                    "repo": j.repo,
                    "ref": j.git_ref,
                    "sha": j.sha,
                    "pr_number": j.pr_number,
                    "state": j.state,
                    "attempts": j.attempts,
                    "cancel_requested": j.cancel_requested,
                    "error": j.error,
                    "delivery_ids": j.delivery_ids,
                    "created_at": j.created_at.to_rfc3339(),
                    "updated_at": j.updated_at.to_rfc3339(),
                })
            })
            .collect(),
    )
}

fn jobs_table(jobs: &[Job]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".to_string();
    }
    let header = [
        "ID",
        "KIND",
        "REPO",
        "REF",
        "SHA",
        "STATE",
        "DELIVERIES",
        "CREATED",
        "UPDATED",
    ];
    let rows: Vec<[String; 9]> = jobs
        .iter()
        .map(|j| {
            [
                j.id.to_string(),
                j.kind.as_str().to_string(),
                j.repo.clone(),
                j.git_ref.clone(),
                if j.sha.is_empty() {
                    "-".into()
                } else {
                    j.sha.chars().take(12).collect()
                },
                j.state.as_str().to_string(),
                if j.delivery_ids.is_empty() {
                    "-".into()
                } else {
                    j.delivery_ids.join(",")
                },
                j.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                j.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}
