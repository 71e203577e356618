//! The qemu builder through a release tag: a platform engineer adds a `[qemu]` builder to
//! a recipe that already builds an AMI, tags a release, and finds the AMIs and the disk
//! images side by side on the commit and in the GitHub Release, each file with a digest
//! that matches it, the small one uploaded as an asset; and the same release with
//! `bakery serve` killed (`kill -9`) while it exports the disk images, then restarted. The
//! real `bakery serve`, moto, the sandbox (the EC2 builder), a real VM (the cached Debian
//! test guest), the fake GitHub and real git.

use std::path::Path;

use super::qemu::{guest, processes_naming, qemu_processes_naming, read_in_image, sha256};
use crate::support::story::*;

const TAG: &str = "release-0.1.0";

/// The `[qemu]` builder added to the story recipe: the test guest, named by an https URL
/// the bot never fetches (its digest is in the operator's download cache, as after a
/// first build), booted with the guest's kernel from the repository.
fn qemu_section(sha: &str) -> String {
    format!(
        r#"
[qemu]
source = "https://images.example.invalid/bakery-test-guest.qcow2"
sha256 = "{sha}"
memory_mb = 768
cpus = 2
ssh_user = "debian"
boot = {{ kernel = "guest/vmlinuz", initrd = "guest/initrd.img", append = "root=/dev/vda rw console=ttyS0" }}
outputs = ["ova", "raw"]
"#
    )
}

fn link_or_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

/// A release of `TAG` under way: the story recipe gains the qemu builder (the test guest,
/// in the operator's download cache), the tag is pushed and delivered.
struct QemuRelease {
    story: Story,
    artifacts: tempfile::TempDir,
    disk_sha: String,
    sha: String,
}

async fn release_with_a_qemu_builder(extra_env: &[(&str, &str)]) -> QemuRelease {
    let guest = tokio::task::spawn_blocking(guest).await.unwrap();
    let disk_sha = std::fs::read_to_string(guest.join("disk.sha256"))
        .unwrap()
        .trim()
        .to_string();

    // The operator's artifact directory, its download cache holding the guest.
    let artifacts = tempfile::tempdir().unwrap();
    link_or_copy(
        &guest.join("disk.qcow2"),
        &artifacts
            .path()
            .join(".cache")
            .join(format!("{disk_sha}.img")),
    );
    let dir = artifacts.path().display().to_string();
    // The OVA (a compressed disk, about 130 MiB) goes up; the 1.5 GiB raw disk does not.
    let mut env = vec![
        ("BAKERY_ARTIFACTS__DIR", dir.as_str()),
        ("BAKERY_ARTIFACTS__MAX_UPLOAD_BYTES", "1073741824"),
        // This machine's /dev/kvm answers, but a guest's kernel hangs under it.
        ("BAKERY_ARTIFACTS__KVM", "false"),
    ];
    env.extend_from_slice(extra_env);
    let story = Story::start_with_env(|_, _| {}, &env).await;

    // The recipe gains a qemu builder; the guest's kernel and initrd go into the repository.
    for f in ["vmlinuz", "initrd.img"] {
        link_or_copy(
            &guest.join(f),
            &story.work.join("recipes/sandbox-base/guest").join(f),
        );
    }
    let recipe = std::fs::read_to_string(story.work.join("recipes/sandbox-base/recipe.toml"))
        .unwrap()
        + &qemu_section(&disk_sha);
    story.commit(
        &[("recipes/sandbox-base/recipe.toml", &recipe)],
        "feat: sandbox-base as a disk image too",
    );
    let pushed = story.push_tag(TAG, TagKind::Annotated);
    let sha = pushed.commit.clone();
    let (status, body) = story
        .deliver("push", "qemu-release-1", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");
    QemuRelease {
        story,
        artifacts,
        disk_sha,
        sha,
    }
}

/// Waits for the one job to finish: a TCG boot and the exports take minutes on a loaded
/// machine, longer than the stories' usual wait.
async fn finished_job(story: &Story) -> bakery::database::Job {
    let started = std::time::Instant::now();
    loop {
        let jobs = story.jobs().await;
        assert!(jobs.len() <= 1, "{jobs:#?}");
        if let Some(job) = jobs.into_iter().find(|j| j.state.is_finished()) {
            return job;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1500),
            "the release did not finish in 25 minutes:\n{}",
            story.bakery.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_tag_builds_the_amis_and_the_disk_images_and_lists_them_with_their_digests() {
    let QemuRelease {
        story,
        artifacts,
        disk_sha,
        sha,
    } = release_with_a_qemu_builder(&[]).await;
    let job = finished_job(&story).await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert!(
        log.contains("accelerator: TCG (software emulation; KVM is turned off"),
        "the log says which accelerator and why: {log}"
    );

    // The files, named by recipe and version, each with its sha256 beside it.
    let folder = artifacts
        .path()
        .join("sandbox-base")
        .join(format!("sandbox-base-{TAG}"));
    let ova = folder.join(format!("sandbox-base-{TAG}.ova"));
    let raw = folder.join(format!("sandbox-base-{TAG}.raw"));
    let mut digests = vec![];
    for f in [&ova, &raw] {
        let digest = sha256(f);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let beside = std::fs::read_to_string(format!("{}.sha256", f.display())).unwrap();
        assert_eq!(beside, format!("{digest}  {name}\n"));
        digests.push((name, digest, std::fs::metadata(f).unwrap().len()));
    }
    // The disk is the provisioned, stamped one: the tag in its /etc/release.
    let release_file = read_in_image(&raw, "/etc/release");
    assert_eq!(release_file.lines().next(), Some(TAG), "{release_file}");
    assert!(
        release_file.contains(&format!("GIT_SHA={sha}")),
        "{release_file}"
    );
    assert!(
        release_file.contains(&format!("SOURCE_SHA256={disk_sha}")),
        "{release_file}"
    );
    assert_eq!(read_in_image(&raw, "/opt/app/VERSION").trim(), TAG);
    // Nothing left running or half-written.
    assert!(qemu_processes_naming(artifacts.path()).is_empty());
    let work: Vec<_> = std::fs::read_dir(artifacts.path().join(".work"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(work.is_empty(), "work folders left: {work:?}");
    assert_only_the_disk_images_in(&folder);

    let repo = story.github.repo(REPO);
    // Both builders have their check run, both succeeded.
    for name in ["bakery/sandbox-base", "bakery/sandbox-base/qemu"] {
        let runs: Vec<_> = repo
            .check_runs
            .values()
            .filter(|r| r.current["name"] == name)
            .collect();
        assert_eq!(runs.len(), 1, "{name}: {runs:#?}");
        assert_eq!(runs[0].current["conclusion"], "success", "{name}");
    }

    // The commit comment: the AMIs, then each disk image with its size and digest.
    assert_eq!(repo.commit_comments.len(), 1, "{:#?}", repo.commit_comments);
    assert_eq!(repo.commit_comments[0]["commit_id"], sha.as_str());
    let comment = repo.commit_comments[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    let ami_at = comment.find("ami-").expect("the AMI table");
    let disks_at = comment.find("#### Disk images").expect("the disk images");
    assert!(ami_at < disks_at, "{comment}");
    for (name, digest, size) in &digests {
        let row = comment
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("{name} in {comment}"));
        assert!(row.contains(digest.as_str()), "{row}");
        assert!(row.contains(&format!("({size} bytes)")), "{row}");
    }

    // The release: the same rows; the OVA uploaded (its bytes are the file's), the raw
    // disk named where it is stored.
    assert_eq!(repo.releases.len(), 1);
    let release = repo.releases.values().next().unwrap();
    let notes = release["body"].as_str().unwrap();
    assert!(notes.contains("## Images"), "{notes}");
    assert!(notes.contains("## Disk images"), "{notes}");
    for (name, digest, _) in &digests {
        let row = notes
            .lines()
            .find(|l| l.contains(name.as_str()) && l.starts_with('|'))
            .unwrap_or_else(|| panic!("{name} in {notes}"));
        assert!(row.contains(digest.as_str()), "{row}");
        if name.ends_with(".ova") {
            assert!(row.ends_with("| release asset |"), "{row}");
        } else {
            assert!(row.contains(&raw.display().to_string()), "{row}");
        }
    }
    let uploaded: Vec<_> = repo
        .release_assets
        .values()
        .filter(|(_, a, _)| {
            a["name"]
                .as_str()
                .is_some_and(|n| n.contains(".ova") || n.contains(".raw"))
        })
        .collect();
    assert_eq!(uploaded.len(), 1, "only the OVA is uploaded");
    let (_, asset, bytes) = uploaded[0];
    assert_eq!(asset["name"], format!("sandbox-base-{TAG}.ova"));
    assert_eq!(asset["content_type"], "application/octet-stream");
    let ova_digest = &digests[0].1;
    let uploaded_digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    assert_eq!(
        &uploaded_digest, ova_digest,
        "the asset's bytes are the file's"
    );
    story.assert_no_github_violations();
}

/// `kill -9` of `bakery serve` while the release exports its disk images (the OVA done,
/// `qemu-img` writing the raw disk), then a restart, as after a crash of the bot's host
/// process. Nothing of the dead build runs on: no QEMU and no `qemu-img` survives bakery.
/// The retried job finds its AMIs released already and builds the disk images again: the
/// dead build's work folder and its half-written raw disk are removed first, and the
/// release ends with every disk image complete, each with its digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_killed_while_exporting_its_disk_images_leaves_no_process_and_is_rebuilt() {
    let QemuRelease {
        mut story,
        artifacts,
        sha,
        ..
    } = release_with_a_qemu_builder(&[
        // The killed process's lease and build heartbeat expire in seconds.
        ("BAKERY_WORKERS__LEASE_SECS", "10"),
        ("BAKERY_WORKERS__BUILD_STALE_SECS", "10"),
    ])
    .await;
    let folder = artifacts
        .path()
        .join("sandbox-base")
        .join(format!("sandbox-base-{TAG}"));
    let ova = folder.join(format!("sandbox-base-{TAG}.ova"));
    let raw = folder.join(format!("sandbox-base-{TAG}.raw"));
    let raw_partial = folder.join(format!("sandbox-base-{TAG}.raw.partial"));

    // Kill bakery while it exports the raw disk (written as `.partial` by qemu-img, then
    // hashed, then renamed).
    let started = std::time::Instant::now();
    let mut polls = 0u32;
    while !raw_partial.exists() {
        polls += 1;
        if polls % 100 == 0 {
            let jobs = story.jobs().await;
            assert!(
                !jobs.iter().any(|j| j.state.is_finished()),
                "the release ended before its raw export was seen: {jobs:#?}\n{}",
                story.bakery.log_text()
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1500),
                "no raw export within 25 minutes:\n{}",
                story.bakery.log_text()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let writing = !processes_naming(b"qemu-img", &raw_partial).is_empty();
    story.bakery.kill_9();
    println!("killed bakery serve during the raw export (qemu-img writing: {writing})");

    // QEMU's processes die with bakery (the kernel signals them as it dies); qemu-img
    // would need a second or more to finish the raw disk.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        let left: Vec<u32> = processes_naming(b"qemu-", artifacts.path());
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "QEMU processes outlived bakery: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ova.is_file(), "the OVA was exported before the kill");
    assert!(
        raw_partial.exists(),
        "the raw disk was half-written: {:?}",
        std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    assert!(!raw.exists());
    let dead_work: Vec<_> = std::fs::read_dir(artifacts.path().join(".work"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dead_work.len(), 1, "{dead_work:?}");

    // The next process retries the job.
    story.bakery = story.bakery.restarted().await;
    let job = finished_job(&story).await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert_eq!(
        job.attempts,
        2,
        "{job:?}\n{log}\n{}",
        story.bakery.log_text()
    );
    assert!(
        log.contains(&format!(
            "removed the work folder of a build that died: {}",
            dead_work[0].display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "removed its unfinished artifact: {}",
            raw_partial.display()
        )),
        "{log}"
    );

    // Every disk image complete, with its digest; nothing half-written, nothing running.
    assert_only_the_disk_images_in(&folder);
    for f in [&ova, &raw] {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let beside = std::fs::read_to_string(format!("{}.sha256", f.display())).unwrap();
        assert_eq!(beside, format!("{}  {name}\n", sha256(f)));
    }
    let release_file = read_in_image(&raw, "/etc/release");
    assert_eq!(release_file.lines().next(), Some(TAG), "{release_file}");
    assert!(
        release_file.contains(&format!("GIT_SHA={sha}")),
        "{release_file}"
    );
    assert!(processes_naming(b"qemu-", artifacts.path()).is_empty());
    let work: Vec<_> = std::fs::read_dir(artifacts.path().join(".work"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(work.is_empty(), "work folders left: {work:?}");

    // One qemu check run, taken over by the retry and completed; the release lists the
    // disk images next to the AMIs.
    let repo = story.github.repo(REPO);
    let runs: Vec<_> = repo
        .check_runs
        .values()
        .filter(|r| r.current["name"] == "bakery/sandbox-base/qemu")
        .collect();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].current["conclusion"], "success");
    assert_eq!(repo.releases.len(), 1);
    let notes = repo.releases.values().next().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(notes.contains("## Images"), "{notes}");
    assert!(notes.contains("ami-"), "{notes}");
    for f in [&ova, &raw] {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            notes
                .lines()
                .any(|l| l.starts_with('|') && l.contains(&name) && l.contains(&sha256(f))),
            "{name} in {notes}"
        );
    }
    story.assert_no_github_violations();
}

/// The release's folder holds its two disk images and their digests, nothing else.
fn assert_only_the_disk_images_in(folder: &std::path::Path) {
    let mut left: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            format!("sandbox-base-{TAG}.ova"),
            format!("sandbox-base-{TAG}.ova.sha256"),
            format!("sandbox-base-{TAG}.raw"),
            format!("sandbox-base-{TAG}.raw.sha256"),
        ]
    );
}
