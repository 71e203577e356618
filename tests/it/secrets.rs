//! Every secret bakery holds or obtains is masked in everything it writes: the job log,
//! the job page, the check run, the commit comment, the job's and the build's error,
//! and the server's own log.

use std::time::{Duration, Instant};

use crate::support::story::*;

/// A build step prints every secret bakery holds at that moment, on stdout and stderr,
/// and fails: its error (with the stderr tail) carries them too. None of them reaches
/// anything bakery writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_any_output() {
    // The provenance signing key, an Ed25519 key as `openssl genpkey` writes it.
    let keys = tempfile::tempdir().unwrap();
    let provenance_key = "-----BEGIN PRIVATE KEY-----\n\
                          MC4CAQAwBQYDK2VwBCIEIEZjRsic4KuwCZJAjtRSoAnMQ4bubPYRhnI3QtzXMdXw\n\
                          -----END PRIVATE KEY-----\n";
    let provenance_file = keys.path().join("provenance.pem");
    std::fs::write(&provenance_file, provenance_key).unwrap();
    let story = Story::start_with_env(
        |files, port| {
            let leak = "\n[[provision]]\ntype = \"shell\"\nname = \"Print the secrets\"\n\
                    inline = [\"while [ ! -f /var/tmp/leak-ready ]; do sleep 0.2; done; \
                    cat /var/tmp/leak; cat /var/tmp/leak >&2; exit 1\"]\n";
            files.insert(
                "recipes/sandbox-base/recipe.toml".into(),
                sandbox_recipe(port, leak),
            );
        },
        &[(
            "BAKERY_PROVENANCE__SIGNING_KEY_FILE",
            provenance_file.to_str().unwrap(),
        )],
    )
    .await;
    let pushed = story.tag_and_push("release-6.0.0");
    let (status, body) = story
        .deliver("push", "leak-1", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");

    // Once bakery has minted its installation token and assumed the target account's
    // role, the step gets every secret to print.
    let started = Instant::now();
    let (installation_token, assumed) = loop {
        let tokens: Vec<String> = story.github.state().tokens.keys().cloned().collect();
        let assumed: Vec<_> = story
            .proxy
            .calls("AssumeRole")
            .into_iter()
            .filter(|c| c.status == 200)
            .collect();
        if let (Some(token), Some(call)) = (tokens.first(), assumed.first()) {
            break (token.clone(), call.clone());
        }
        assert!(
            started.elapsed() < JOB_TIMEOUT,
            "no token or role yet\n{}",
            story.bakery.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let app_key = std::fs::read_to_string(story.app_key_file()).unwrap();
    let mut secrets: Vec<String> = vec![
        WEBHOOK_SECRET.into(),
        JOB_PAGE_KEY.into(),
        installation_token,
        assumed.response_field("AccessKeyId").unwrap(),
        assumed.response_field("SecretAccessKey").unwrap(),
        assumed.response_field("SessionToken").unwrap(),
    ];
    for (name, value) in story.aws_env() {
        if name == "AWS_ACCESS_KEY_ID" || name == "AWS_SECRET_ACCESS_KEY" {
            secrets.push(value);
        }
    }
    // The App's private key, line by line as a step prints it.
    secrets.extend(
        app_key
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 8)
            .map(str::to_string),
    );
    // The provenance key, as a step would print it.
    secrets.extend(
        provenance_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string),
    );
    let printed = format!("{}\n{app_key}\n{provenance_key}", secrets[..8].join("\n"));
    std::fs::write(story.sandbox.path("/var/tmp/leak"), &printed).unwrap();
    std::fs::write(story.sandbox.path("/var/tmp/leak-ready"), "").unwrap();

    let job = story.wait_for_only_job().await;
    assert_eq!(job.state, bakery::database::JobState::Failed);
    let log = story.job_log(job.id).await;
    assert!(
        log.contains("Print the secrets"),
        "the step ran and failed: {log}"
    );
    assert!(log.contains("***"), "the secrets are masked: {log}");

    // Everything bakery wrote.
    let mut outputs: Vec<(String, String)> = vec![
        ("the job log".into(), log.clone()),
        (
            "the job's error".into(),
            job.error.clone().unwrap_or_default(),
        ),
        ("the server log".into(), story.bakery.log_text()),
    ];
    for b in story.store.list_builds(&Default::default()).await.unwrap() {
        outputs.push((
            format!("build {}'s error", b.build_id),
            b.error.unwrap_or_default(),
        ));
    }
    let repo = story.github.repo(REPO);
    for run in repo.check_runs.values() {
        outputs.push((
            format!("check run {}", run.current["name"]),
            format!("{}\n{}", run.current, run.summaries.join("\n")),
        ));
    }
    for c in &repo.commit_comments {
        outputs.push(("a commit comment".into(), c["body"].to_string()));
    }
    let link = repo
        .check_runs
        .values()
        .find_map(|r| r.current["details_url"].as_str().map(str::to_string))
        .expect("a details link");
    let path = link.strip_prefix("https://bakery.example.com").unwrap();
    let (status, page) =
        crate::support::bakery_process::http(story.bakery.addr, "GET", path, &[], b"")
            .await
            .unwrap();
    assert_eq!(status, 200);
    outputs.push(("the job page".into(), page));

    assert!(
        outputs[1].1.contains("exited with status 1"),
        "the error carries the step's stderr: {}",
        outputs[1].1
    );
    let mut leaks = vec![];
    for (what, text) in &outputs {
        for (i, secret) in secrets.iter().enumerate() {
            if text.contains(secret.as_str()) {
                leaks.push(format!("secret #{i} ({}…) in {what}", &secret[..4]));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// The database password, in the URL's user part or as a `password=` parameter, appears
/// neither in `config check` nor in what `bakery serve` prints when it cannot open the
/// store.
#[test]
fn the_database_password_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    for (url, password) in [
        (
            "postgres://postgres:user-part-password@127.0.0.1:5432/bakery_no_such_db",
            "user-part-password",
        ),
        (
            "postgres://postgres@127.0.0.1:5432/bakery_no_such_db?password=query-password",
            "query-password",
        ),
    ] {
        for args in [&["config", "check"][..], &["serve"][..]] {
            let out = std::process::Command::new(crate::support::bakery_process::bakery_bin())
                .args(args)
                .current_dir(dir.path())
                .env("BAKERY_DATABASE_URL", url)
                .env("BAKERY_LISTEN", "127.0.0.1:0")
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !all.contains(password),
                "{args:?} printed {password}:\n{all}"
            );
            if args[0] == "serve" {
                assert!(!out.status.success(), "no such database: {all}");
                assert!(all.contains("cannot open the store"), "{all}");
            }
        }
    }
}
