//! Checking out the commit a job builds, with git2.
//!
//! Each repository has a cached bare mirror under `<work_dir>/mirrors/`, fetched into
//! before every job, so a job downloads only what is new. One fetch at a time goes into a
//! mirror, across processes too (a file lock beside it), so the lock files a killed fetch
//! left are known stale and removed; a mirror that no longer opens is cloned again.
//! Fetches have network timeouts (libgit2 has none by default). The job's commit is then checked
//! out into its own workspace under `<work_dir>/jobs/<job>/`, with the repository's tags
//! (release notes need them).
//!
//! The clone URL is the one GitHub's API reports for the repository (GitHub, GitHub
//! Enterprise Server, or a local path in tests), never one from a delivery. Over HTTPS the
//! installation token is handed to git by a credentials callback as user
//! `x-access-token`, and only for that URL's own origin: it never appears in a URL, in a
//! git config file, or in a log line, and a redirect elsewhere gets nothing. Remotes are
//! anonymous, so no URL is stored either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use git2::{AutotagOption, FetchOptions, Oid, RemoteCallbacks, Repository};
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::github::api::repo::RepoName;
use crate::retry::{retry_with, RetryPolicy};

/// Three attempts, 2 s to 20 s apart; a fetch of a large repository may take minutes.
pub const GIT_FETCH: RetryPolicy = RetryPolicy::new(
    "git-fetch",
    3,
    Duration::from_secs(2),
    Duration::from_secs(20),
    Duration::from_secs(15 * 60),
);

/// libgit2 waits for ever on a stalled server unless told otherwise: connecting may take
/// 30 s, and each read or write 2 minutes, before the attempt fails (and is retried).
fn set_network_timeouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: libgit2's global options, set once before any fetch of this process.
        let set = unsafe {
            git2::opts::set_server_connect_timeout_in_milliseconds(30_000)
                .and_then(|_| git2::opts::set_server_timeout_in_milliseconds(120_000))
        };
        if let Err(e) = set {
            tracing::warn!("cannot set git's network timeouts: {e}");
        }
    });
}

/// What to check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A tag, peeled to the commit it points at (through an annotated or signed tag
    /// object). When `commit` is known (the commit the job was created for), the tag must
    /// still point at it: a tag moved to another commit since then is refused. A tag
    /// object re-created on the same commit is not a move.
    Tag {
        name: String,
        commit: Option<String>,
    },
    /// A pull request's head commit, fetched through `refs/pull/<number>/head` (which
    /// also holds the head of a fork's pull request).
    PullRequest { number: u64, sha: String },
    /// A branch's head, as the repository serves it now.
    Branch { name: String },
}

/// Why a checkout was refused: the repository is reachable, but does not hold what the
/// job was created for. Callers decide what to report on this type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckoutRefusal {
    #[error(
        "tag {tag} now points at commit {found}, not at {expected} as when the job was \
         created: the tag was moved"
    )]
    TagMoved {
        tag: String,
        expected: String,
        found: String,
    },
    #[error("the repository has no tag {tag} (deleted since?)")]
    TagMissing { tag: String },
    #[error("tag {tag} does not point at a commit")]
    TagNotACommit { tag: String },
    #[error("commit {sha} of pull request #{number} is not in the repository")]
    CommitMissing { number: u64, sha: String },
}

/// A job's checkout.
#[derive(Debug)]
pub struct Workspace {
    pub path: PathBuf,
    /// The commit checked out (for a tag: the commit the tag points at).
    pub sha: String,
    /// The annotated tag object the tag points at; `None` for a lightweight tag or a
    /// pull request.
    pub tag_object: Option<String>,
}

impl Workspace {
    pub fn repository(&self) -> anyhow::Result<Repository> {
        Repository::open(&self.path)
            .with_context(|| format!("cannot open the workspace {}", self.path.display()))
    }

    /// Deletes the workspace.
    pub fn remove(self) -> anyhow::Result<()> {
        std::fs::remove_dir_all(&self.path)
            .with_context(|| format!("cannot delete the workspace {}", self.path.display()))
    }
}

/// Mirrors and workspaces under one folder (the server's `work_dir`).
#[derive(Debug, Clone)]
pub struct Checkouts {
    root: PathBuf,
    /// One fetch at a time per mirror within this process.
    locks: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
    policy: RetryPolicy,
    /// Stops fetches (the job was cancelled, the server shuts down).
    cancel: Option<CancellationToken>,
}

/// A checkout stopped because its job was cancelled or the server shuts down.
#[derive(Debug, thiserror::Error)]
#[error("the checkout was stopped")]
pub struct CheckoutCancelled;

impl Checkouts {
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        set_network_timeouts();
        Checkouts {
            root: work_dir.into(),
            locks: Arc::default(),
            policy: GIT_FETCH,
            cancel: None,
        }
    }

    /// These checkouts, stopping their fetches when `cancel` is cancelled.
    pub fn until(&self, cancel: CancellationToken) -> Checkouts {
        Checkouts {
            cancel: Some(cancel),
            ..self.clone()
        }
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn mirror_path(&self, repo: &RepoName) -> anyhow::Result<PathBuf> {
        Ok(self
            .root
            .join("mirrors")
            .join(safe_component(&repo.owner)?)
            .join(format!("{}.git", safe_component(&repo.name)?)))
    }

    pub fn workspace_path(&self, job: &str) -> anyhow::Result<PathBuf> {
        Ok(self.root.join("jobs").join(safe_component(job)?))
    }

    /// Fetches `clone_url` into the repository's mirror, then checks `target` out into
    /// the workspace of `job` (replacing a leftover one from an earlier attempt).
    pub async fn checkout(
        &self,
        repo: &RepoName,
        clone_url: &str,
        token: Option<&Secret>,
        target: &Target,
        job: &str,
    ) -> anyhow::Result<Workspace> {
        let mirror = self.mirror_path(repo)?;
        let lock = {
            let mut locks = self.locks.lock().expect("checkout locks poisoned");
            locks.entry(mirror.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let cancel = self.cancel.clone().unwrap_or_default();

        let refspecs = mirror_refspecs(target);
        let what = format!("fetch {repo} into its mirror");
        retry_with(&self.policy, &what, is_transient, || {
            let (mirror, url, token, refspecs) = (
                mirror.clone(),
                clone_url.to_string(),
                token.cloned(),
                refspecs.clone(),
            );
            let cancel = cancel.clone();
            async move {
                // The fetch holds the mirror's lock across processes for as long as it
                // runs, even after an attempt gave up on it: the next fetch into the
                // mirror (a retry, another replica) waits for it to end.
                let fetch = tokio::task::spawn_blocking(move || {
                    let _shared = MirrorLock::acquire(&mirror)?;
                    fetch_into_mirror(&mirror, &url, token.as_ref(), &refspecs)
                });
                tokio::select! {
                    r = fetch => r.unwrap_or_else(|e| {
                        Err(git2::Error::from_str(&format!("fetch task died: {e}")))
                    }),
                    _ = cancel.cancelled() => Err(git2::Error::new(
                        git2::ErrorCode::User,
                        git2::ErrorClass::None,
                        "the fetch was stopped",
                    )),
                }
            }
        })
        .await
        .map_err(|e| {
            if cancel.is_cancelled() {
                anyhow::Error::new(CheckoutCancelled)
            } else {
                e
            }
        })
        .with_context(|| {
            format!(
                "cannot fetch {repo} from {}: check the clone URL and that the GitHub App is \
                 installed on the repository (contents: read)",
                redact_userinfo(clone_url)
            )
        })?;

        let workspace = self.workspace_path(job)?;
        let (target, repo_name) = (target.clone(), repo.clone());
        tokio::task::spawn_blocking(move || {
            check_out(&mirror, &workspace, &target).with_context(|| {
                format!(
                    "cannot check out {} of {repo_name} into {}",
                    describe(&target),
                    workspace.display()
                )
            })
        })
        .await
        .context("checkout task died")?
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Tag {
            name,
            commit: Some(sha),
        } => format!("tag {name} ({sha})"),
        Target::Tag { name, commit: None } => format!("tag {name}"),
        Target::PullRequest { number, sha } => format!("pull request #{number} ({sha})"),
        Target::Branch { name } => format!("branch {name}"),
    }
}

/// What a mirror fetch asks for: every branch and tag, plus the pull request's head.
fn mirror_refspecs(target: &Target) -> Vec<String> {
    let mut specs = vec![
        "+refs/heads/*:refs/heads/*".to_string(),
        "+refs/tags/*:refs/tags/*".to_string(),
    ];
    if let Target::PullRequest { number, .. } = target {
        specs.push(format!("+refs/pull/{number}/head:refs/pull/{number}/head"));
    }
    specs
}

/// Network trouble is worth another attempt; a refused login or a missing repository is not.
fn is_transient(e: &git2::Error) -> bool {
    use git2::{ErrorClass, ErrorCode};
    if matches!(
        e.code(),
        ErrorCode::Auth | ErrorCode::Certificate | ErrorCode::NotFound
    ) {
        return false;
    }
    matches!(
        e.class(),
        ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssl | ErrorClass::Os
    )
}

/// `scheme://host[:port]` of an http(s) URL, lower-cased; `None` for anything else.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// The credentials callback: the token goes only to `clone_url`'s own origin (a redirect
/// to another host, or another scheme, gets nothing), once.
fn callbacks(token: Option<&Secret>, clone_url: &str) -> RemoteCallbacks<'static> {
    let mut cb = RemoteCallbacks::new();
    if let Some(token) = token {
        let token = token.clone();
        let expected = origin(clone_url);
        let mut offered = false;
        cb.credentials(move |url, _user, allowed| {
            if expected.is_none() || origin(url) != expected {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "refusing to send the installation token to another host than the \
                     repository's",
                ));
            }
            // libgit2 asks again after a refused login; asking once is enough.
            if offered || !allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "the repository refused the installation token",
                ));
            }
            offered = true;
            git2::Cred::userpass_plaintext("x-access-token", token.expose())
        });
    }
    cb
}

/// The mirror's lock across processes: a file lock on `<mirror>.bakery-lock`, beside
/// the mirror. Whoever holds it is the only one fetching into the mirror, so git's own
/// `*.lock` files found in it then are stale (left by a killed fetch).
struct MirrorLock {
    _file: std::fs::File,
}

impl MirrorLock {
    /// Waits for the lock (blocking: call it on a blocking thread).
    fn acquire(mirror: &Path) -> Result<MirrorLock, git2::Error> {
        let mut name = mirror.as_os_str().to_owned();
        name.push(".bakery-lock");
        let path = PathBuf::from(name);
        let fail = |what: &str, e: std::io::Error| {
            git2::Error::from_str(&format!("cannot {what} {}: {e}", path.display()))
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail("create the folder of", e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| fail("open", e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(fail("lock", std::io::Error::last_os_error()));
        }
        Ok(MirrorLock { _file: file })
    }
}

/// Makes the mirror usable again after a killed fetch: removes its stale `*.lock` files,
/// and clones it anew (an empty bare repository, fetched into) when it no longer opens.
/// Only called under [`MirrorLock`].
fn heal_mirror(mirror: &Path) -> Result<Repository, git2::Error> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        git2::Error::from_str(&format!("cannot {what} {}: {e}", p.display()))
    };
    if mirror.is_dir() {
        let mut stack = vec![mirror.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| io("read", &dir, e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "lock") {
                    tracing::warn!(
                        "removing {}, left by a fetch that was killed",
                        path.display()
                    );
                    std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
                }
            }
        }
        match Repository::open_bare(mirror) {
            Ok(r) if head_resolves(&r) => return Ok(r),
            Ok(_) | Err(_) => {
                tracing::warn!(
                    "the mirror {} is damaged: cloning it again",
                    mirror.display()
                );
                std::fs::remove_dir_all(mirror).map_err(|e| io("remove", mirror, e))?;
            }
        }
    }
    if let Some(parent) = mirror.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    }
    Repository::init_bare(mirror)
}

/// Whether a repository's `HEAD` resolves, or names a branch not fetched (yet).
fn head_resolves(repo: &Repository) -> bool {
    match repo.head() {
        Ok(_) => true,
        Err(e) => matches!(
            e.code(),
            git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound
        ),
    }
}

fn fetch_into_mirror(
    mirror: &Path,
    url: &str,
    token: Option<&Secret>,
    refspecs: &[String],
) -> Result<(), git2::Error> {
    let repo = heal_mirror(mirror)?;
    let mut remote = repo.remote_anonymous(url)?;
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks(token, url));
    opts.download_tags(AutotagOption::None);
    opts.prune(git2::FetchPrune::On);
    let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
    remote.fetch(&specs, Some(&mut opts), None)
}

/// The commit `target` names in `source`, and the tag object in between if any.
fn resolve(source: &Repository, target: &Target) -> anyhow::Result<(Oid, Option<Oid>)> {
    match target {
        Target::Tag { name, commit } => {
            let reference = source
                .find_reference(&format!("refs/tags/{name}"))
                .map_err(|_| CheckoutRefusal::TagMissing { tag: name.clone() })?;
            let pointed = reference
                .target()
                .context("the tag is a symbolic reference")?;
            let found = reference
                .peel_to_commit()
                .map_err(|_| CheckoutRefusal::TagNotACommit { tag: name.clone() })?
                .id();
            if let Some(expected) = commit {
                if found.to_string() != *expected {
                    return Err(CheckoutRefusal::TagMoved {
                        tag: name.clone(),
                        expected: expected.clone(),
                        found: found.to_string(),
                    }
                    .into());
                }
            }
            Ok((found, (pointed != found).then_some(pointed)))
        }
        Target::PullRequest { number, sha } => {
            let missing = || CheckoutRefusal::CommitMissing {
                number: *number,
                sha: sha.clone(),
            };
            let wanted = Oid::from_str(sha).map_err(|_| missing())?;
            source.find_commit(wanted).map_err(|_| missing())?;
            Ok((wanted, None))
        }
        Target::Branch { name } => {
            let head = source
                .find_reference(&format!("refs/heads/{name}"))
                .and_then(|r| r.peel_to_commit())
                .with_context(|| format!("the branch {name} is not in the repository"))?;
            Ok((head.id(), None))
        }
    }
}

fn check_out(mirror: &Path, workspace: &Path, target: &Target) -> anyhow::Result<Workspace> {
    let source = Repository::open_bare(mirror)
        .with_context(|| format!("cannot open the mirror {}", mirror.display()))?;
    let (wanted, tag_object) = resolve(&source, target)?;

    if workspace.exists() {
        std::fs::remove_dir_all(workspace)
            .with_context(|| format!("cannot clear the old workspace {}", workspace.display()))?;
    }
    std::fs::create_dir_all(workspace)
        .with_context(|| format!("cannot create the workspace {}", workspace.display()))?;
    let repo = Repository::init(workspace)?;
    {
        let mirror_url = mirror
            .to_str()
            .context("the mirror path is not valid UTF-8")?;
        let mut remote = repo.remote_anonymous(mirror_url)?;
        let mut specs = vec![
            "+refs/tags/*:refs/tags/*".to_string(),
            "+refs/heads/*:refs/remotes/origin/*".to_string(),
        ];
        if let Target::PullRequest { number, .. } = target {
            specs.push(format!("+refs/pull/{number}/head:refs/pull/{number}/head"));
        }
        let mut opts = FetchOptions::new();
        opts.download_tags(AutotagOption::None);
        remote
            .fetch(&specs, Some(&mut opts), None)
            .context("cannot copy the commit from the mirror")?;
    }
    repo.set_head_detached(wanted)?;
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    repo.checkout_head(Some(&mut co))
        .context("cannot write the commit's files")?;
    Ok(Workspace {
        path: workspace.to_path_buf(),
        sha: wanted.to_string(),
        tag_object: tag_object.map(|o| o.to_string()),
    })
}

/// A path component from untrusted text: no separators, no `.`/`..`.
fn safe_component(s: &str) -> anyhow::Result<String> {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    anyhow::ensure!(
        !cleaned.is_empty() && cleaned != "." && cleaned != "..",
        "{s:?} cannot name a folder"
    );
    Ok(cleaned)
}

/// The URL without a `user:password@` part, for messages.
fn redact_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((_, host)) = rest.split_once('@').filter(|(u, _)| !u.contains('/')) {
            return format!("{scheme}://***@{host}");
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::git::testutil::{run_git, GitRepo};

    /// A working repository and a bare "origin" it pushes to, both via the git CLI.
    struct Origin {
        work: GitRepo,
        bare: tempfile::TempDir,
    }

    impl Origin {
        fn new() -> Self {
            let work = GitRepo::init();
            work.write("bakery.toml", "[defaults]\n");
            work.write("recipes/base/recipe.toml", "name = \"base\"\n");
            work.commit("initial");
            let bare = tempfile::tempdir().unwrap();
            run_git(bare.path(), &["init", "-q", "--bare", "-b", "main"], 0);
            work.git(&["remote", "add", "origin", bare.path().to_str().unwrap()]);
            work.git(&["push", "-q", "origin", "main"]);
            Origin { work, bare }
        }
        fn url(&self) -> String {
            self.bare.path().display().to_string()
        }
        fn tag_and_push(&self, tag: &str) -> String {
            self.work.git(&["tag", "-a", tag, "-m", tag]);
            self.work.git(&["push", "-q", "origin", "main", tag]);
            self.work.git(&["rev-parse", &format!("{tag}^{{commit}}")])
        }
    }

    fn repo() -> RepoName {
        RepoName::new("acme", "images")
    }

    #[tokio::test]
    async fn checks_out_a_tag_and_reuses_the_mirror() {
        let origin = Origin::new();
        let sha1 = origin.tag_and_push("release-0.1.0");
        let work = tempfile::tempdir().unwrap();
        let checkouts = Checkouts::new(work.path());

        let ws = checkouts
            .checkout(
                &repo(),
                &origin.url(),
                None,
                &Target::Tag {
                    name: "release-0.1.0".into(),
                    commit: Some(sha1.clone()),
                },
                "job-1",
            )
            .await
            .unwrap();
        assert_eq!(ws.sha, sha1);
        assert_eq!(ws.path, work.path().join("jobs/job-1"));
        let recipe = std::fs::read_to_string(ws.path.join("recipes/base/recipe.toml")).unwrap();
        assert_eq!(recipe, "name = \"base\"\n");
        let head = ws.repository().unwrap().head().unwrap().target().unwrap();
        assert_eq!(head.to_string(), sha1);

        // A second release: the same mirror is fetched into, the workspace has both tags.
        origin
            .work
            .write("recipes/web/recipe.toml", "name = \"web\"\n");
        origin.work.commit("add web");
        let sha2 = origin.tag_and_push("release-0.2.0");
        let mirror = checkouts.mirror_path(&repo()).unwrap();
        let mirror_config_before = std::fs::read_to_string(mirror.join("config")).unwrap();
        let ws2 = checkouts
            .checkout(
                &repo(),
                &format!("file://{}", origin.url()),
                None,
                &Target::Tag {
                    name: "release-0.2.0".into(),
                    commit: Some(sha2.clone()),
                },
                "job-2",
            )
            .await
            .unwrap();
        assert!(ws2.path.join("recipes/web/recipe.toml").exists());
        let r = ws2.repository().unwrap();
        assert!(r.find_reference("refs/tags/release-0.1.0").is_ok());
        assert_eq!(
            std::fs::read_to_string(mirror.join("config")).unwrap(),
            mirror_config_before,
            "no remote URL is written into the mirror"
        );
        // The first job's files are untouched by the second checkout.
        assert!(!ws.path.join("recipes/web").exists());
        ws.remove().unwrap();
        assert!(!work.path().join("jobs/job-1").exists());
    }

    #[tokio::test]
    async fn refuses_a_moved_tag() {
        let origin = Origin::new();
        let old = origin.tag_and_push("release-0.1.0");
        let old_commit = old.clone();
        origin.work.write("README.md", "x\n");
        origin.work.commit("later");
        origin
            .work
            .git(&["tag", "-f", "-a", "release-0.1.0", "-m", "moved"]);
        origin
            .work
            .git(&["push", "-q", "-f", "origin", "main", "release-0.1.0"]);
        let work = tempfile::tempdir().unwrap();
        let err = Checkouts::new(work.path())
            .checkout(
                &repo(),
                &origin.url(),
                None,
                &Target::Tag {
                    name: "release-0.1.0".into(),
                    commit: Some(old),
                },
                "job-1",
            )
            .await
            .unwrap_err();
        let new = origin.work.git(&["rev-parse", "release-0.1.0^{commit}"]);
        assert_eq!(
            err.downcast_ref::<CheckoutRefusal>(),
            Some(&CheckoutRefusal::TagMoved {
                tag: "release-0.1.0".into(),
                expected: old_commit,
                found: new,
            }),
            "{err:#}"
        );
    }

    /// `git tag -a` (and `git tag -s`): the tag ref points at a tag object, which is not
    /// the commit. The commit is what is checked out and compared.
    #[tokio::test]
    async fn an_annotated_tag_is_peeled_to_its_commit() {
        let origin = Origin::new();
        let commit = origin.tag_and_push("release-0.1.0");
        let tag_object = origin.work.git(&["rev-parse", "release-0.1.0"]);
        assert_ne!(tag_object, commit, "an annotated tag has its own object");
        let work = tempfile::tempdir().unwrap();
        let checkouts = Checkouts::new(work.path());
        for (job, expected) in [("job-known", Some(commit.clone())), ("job-create", None)] {
            let ws = checkouts
                .checkout(
                    &repo(),
                    &origin.url(),
                    None,
                    &Target::Tag {
                        name: "release-0.1.0".into(),
                        commit: expected,
                    },
                    job,
                )
                .await
                .unwrap();
            assert_eq!(ws.sha, commit);
            assert_eq!(ws.tag_object.as_deref(), Some(tag_object.as_str()));
            let head = ws.repository().unwrap().head().unwrap().target().unwrap();
            assert_eq!(head.to_string(), commit);
        }
    }

    /// A tag object re-created on the same commit (a new message, a signature added) is
    /// not a moved tag.
    #[tokio::test]
    async fn a_tag_re_created_on_the_same_commit_is_not_moved() {
        let origin = Origin::new();
        let commit = origin.tag_and_push("release-0.1.0");
        let first_object = origin.work.git(&["rev-parse", "release-0.1.0"]);
        origin.work.git(&[
            "tag",
            "-f",
            "-a",
            "release-0.1.0",
            "-m",
            "re-tagged",
            &commit,
        ]);
        origin
            .work
            .git(&["push", "-q", "-f", "origin", "release-0.1.0"]);
        let second_object = origin.work.git(&["rev-parse", "release-0.1.0"]);
        assert_ne!(first_object, second_object);
        let work = tempfile::tempdir().unwrap();
        let ws = Checkouts::new(work.path())
            .checkout(
                &repo(),
                &origin.url(),
                None,
                &Target::Tag {
                    name: "release-0.1.0".into(),
                    commit: Some(commit.clone()),
                },
                "job-1",
            )
            .await
            .unwrap();
        assert_eq!(ws.sha, commit);
        assert_eq!(ws.tag_object.as_deref(), Some(second_object.as_str()));
    }

    /// `git tag -s`: a signed tag is a tag object with a signature, peeled the same way.
    #[tokio::test]
    async fn a_signed_tag_is_peeled_to_its_commit() {
        let origin = Origin::new();
        let gnupg = tempfile::tempdir().unwrap();
        let home = gnupg.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let status = std::process::Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .args(["Ada Baker <ada@example.com>", "ed25519", "sign", "never"])
            .output()
            .expect("gpg runs (scripts/setup.sh installs gnupg)");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        // git runs gpg through a wrapper that points it at the test's keyring.
        let wrapper = gnupg.path().join("gpg");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nGNUPGHOME='{}' exec gpg \"$@\"\n",
                home.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = format!("gpg.program={}", wrapper.display());
        origin.work.git(&[
            "-c",
            &program,
            "-c",
            "user.signingkey=ada@example.com",
            "tag",
            "-s",
            "release-0.1.0",
            "-m",
            "signed release",
        ]);
        origin.work.git(&["push", "-q", "origin", "release-0.1.0"]);
        let object = origin.work.git(&["cat-file", "-p", "release-0.1.0"]);
        assert!(object.contains("BEGIN PGP SIGNATURE"), "{object}");
        let commit = origin.work.git(&["rev-parse", "HEAD"]);
        let work = tempfile::tempdir().unwrap();
        let ws = Checkouts::new(work.path())
            .checkout(
                &repo(),
                &origin.url(),
                None,
                &Target::Tag {
                    name: "release-0.1.0".into(),
                    commit: Some(commit.clone()),
                },
                "job-1",
            )
            .await
            .unwrap();
        assert_eq!(ws.sha, commit);
        assert!(ws.tag_object.is_some());
    }

    #[tokio::test]
    async fn a_lightweight_tag_has_no_tag_object() {
        let origin = Origin::new();
        origin.work.git(&["tag", "release-0.1.0"]);
        origin.work.git(&["push", "-q", "origin", "release-0.1.0"]);
        let commit = origin.work.git(&["rev-parse", "HEAD"]);
        let work = tempfile::tempdir().unwrap();
        let ws = Checkouts::new(work.path())
            .checkout(
                &repo(),
                &origin.url(),
                None,
                &Target::Tag {
                    name: "release-0.1.0".into(),
                    commit: None,
                },
                "job-1",
            )
            .await
            .unwrap();
        assert_eq!(ws.sha, commit);
        assert_eq!(ws.tag_object, None);
    }

    #[tokio::test]
    async fn checks_out_a_pull_request_head() {
        let origin = Origin::new();
        origin.work.git(&["checkout", "-q", "-b", "feature"]);
        origin
            .work
            .write("recipes/base/recipe.toml", "name = \"base\"\n# changed\n");
        let head = origin.work.commit("change base");
        origin
            .work
            .git(&["push", "-q", "origin", "HEAD:refs/pull/7/head"]);
        let work = tempfile::tempdir().unwrap();
        let ws = Checkouts::new(work.path())
            .checkout(
                &repo(),
                &origin.url(),
                Some(&Secret::new("ghs_unused_over_file_transport")),
                &Target::PullRequest {
                    number: 7,
                    sha: head.clone(),
                },
                "job-pr",
            )
            .await
            .unwrap();
        assert_eq!(ws.sha, head);
        let text = std::fs::read_to_string(ws.path.join("recipes/base/recipe.toml")).unwrap();
        assert!(text.contains("# changed"));
        // The token is nowhere on disk.
        for entry in walk(work.path()) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("ghs_unused"),
                "token found in {}",
                entry.display()
            );
        }
    }

    #[tokio::test]
    async fn a_missing_repository_fails_without_retrying_forever() {
        let work = tempfile::tempdir().unwrap();
        let fast = RetryPolicy::new(
            "test",
            2,
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_secs(60),
        );
        let err = Checkouts::new(work.path())
            .with_policy(fast)
            .checkout(
                &repo(),
                "/nonexistent/repo.git",
                None,
                &Target::Tag {
                    name: "release-0.1.0".into(),
                    commit: Some("0".repeat(40)),
                },
                "job-x",
            )
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot fetch acme/images"),
            "{err:#}"
        );
    }

    /// A fetch killed half-way (`kill -9`, the OOM killer) leaves git's `*.lock` files in
    /// the mirror. The next checkout clears them instead of failing on them for ever.
    #[tokio::test]
    async fn a_killed_fetchs_lock_files_are_cleared() {
        let origin = Origin::new();
        let sha1 = origin.tag_and_push("release-0.1.0");
        let work = tempfile::tempdir().unwrap();
        let checkouts = Checkouts::new(work.path()).with_policy(RetryPolicy::new(
            "test",
            1,
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_secs(30),
        ));
        let tag = |name: &str, sha: &str| Target::Tag {
            name: name.into(),
            commit: Some(sha.into()),
        };
        checkouts
            .checkout(
                &repo(),
                &origin.url(),
                None,
                &tag("release-0.1.0", &sha1),
                "job-1",
            )
            .await
            .unwrap();
        let mirror = checkouts.mirror_path(&repo()).unwrap();
        for stale in [
            "packed-refs.lock",
            "refs/tags/release-0.2.0.lock",
            "refs/heads/main.lock",
        ] {
            std::fs::write(mirror.join(stale), "").unwrap();
        }
        origin
            .work
            .write("recipes/web/recipe.toml", "name = \"web\"\n");
        origin.work.commit("add web");
        let sha2 = origin.tag_and_push("release-0.2.0");
        let ws = checkouts
            .checkout(
                &repo(),
                &origin.url(),
                None,
                &tag("release-0.2.0", &sha2),
                "job-2",
            )
            .await
            .unwrap();
        assert_eq!(ws.sha, sha2);
    }

    /// A server that accepts the connection and never answers. The job is cancelled: the
    /// checkout stops at once instead of waiting on the stalled fetch.
    #[tokio::test]
    async fn a_stalled_fetch_stops_when_the_job_is_cancelled() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/acme/images.git", server.local_addr().unwrap());
        let held = std::thread::spawn(move || {
            let connection = server.accept();
            std::thread::sleep(Duration::from_secs(3));
            drop(connection);
        });
        let work = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let checkouts = Checkouts::new(work.path()).until(cancel.clone());
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.cancel();
        });
        let started = std::time::Instant::now();
        let target = Target::Tag {
            name: "release-0.1.0".into(),
            commit: Some("1".repeat(40)),
        };
        let err = checkouts
            .checkout(&repo(), &url, None, &target, "job-1")
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(err.chain().any(|c| c.is::<CheckoutCancelled>()), "{err:#}");
        held.join().unwrap();
    }

    /// A mirror broken beyond opening (a full disk, a half-written config) is cloned again.
    #[tokio::test]
    async fn a_corrupt_mirror_is_cloned_again() {
        let origin = Origin::new();
        let sha1 = origin.tag_and_push("release-0.1.0");
        let work = tempfile::tempdir().unwrap();
        let checkouts = Checkouts::new(work.path()).with_policy(RetryPolicy::new(
            "test",
            1,
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_secs(30),
        ));
        let target = Target::Tag {
            name: "release-0.1.0".into(),
            commit: Some(sha1.clone()),
        };
        checkouts
            .checkout(&repo(), &origin.url(), None, &target, "job-1")
            .await
            .unwrap();
        let mirror = checkouts.mirror_path(&repo()).unwrap();
        std::fs::write(mirror.join("config"), "[core\n\0\0garbage").unwrap();
        std::fs::write(mirror.join("HEAD"), "").unwrap();
        let ws = checkouts
            .checkout(&repo(), &origin.url(), None, &target, "job-2")
            .await
            .unwrap();
        assert_eq!(ws.sha, sha1);
    }

    #[test]
    fn the_token_goes_only_to_the_repositorys_origin() {
        assert_eq!(
            origin("https://GitHub.com/acme/images.git").as_deref(),
            Some("https://github.com")
        );
        assert_eq!(
            origin("http://x-access-token:t@127.0.0.1:8080/git/a.git").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("file:///srv/mirror.git"), None);
        assert_eq!(origin("/srv/mirror.git"), None);
        assert_ne!(
            origin("https://github.com.evil.example/acme/images.git"),
            origin("https://github.com/acme/images.git")
        );
    }

    #[test]
    fn unsafe_names_are_cleaned() {
        assert_eq!(safe_component("a/b").unwrap(), "a_b");
        assert!(safe_component("..").is_err());
        assert_eq!(
            redact_userinfo("https://x-access-token:ghs_1@github.com/a/b.git"),
            "https://***@github.com/a/b.git"
        );
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
