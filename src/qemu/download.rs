//! An `https` source disk, downloaded with `curl` (https only, redirects included) into a
//! cache keyed by the recipe's sha256: `<artifact dir>/.cache/<sha256>`. The download goes
//! to the build's work folder first and enters the cache only once its digest matches, so
//! the cache holds nothing unchecked. Touches: the network (that URL), the work folder
//! file it is given, and the cache folder.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::process::Command;

use super::ova::sha256_file;

/// `curl`'s argument vector: fail on HTTP errors, https only (also after a redirect).
pub fn curl_args(url: &str, out: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        "--fail",
        "--silent",
        "--show-error",
        "--location",
        "--proto",
        "=https",
        "--proto-redir",
        "=https",
        "--retry",
        "3",
        "--output",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    a.push(out.into());
    a.push(url.into());
    a
}

/// Where a disk with this digest is cached.
pub fn cached_path(cache: &Path, sha256: &str) -> PathBuf {
    cache.join(format!("{sha256}.img"))
}

/// The cached disk for `sha256`, downloading it from `url` through `partial` first when it
/// is not cached. Errors when the download's digest differs (the file is removed).
pub async fn fetch(
    url: &str,
    sha256: &str,
    cache: &Path,
    partial: &Path,
) -> anyhow::Result<PathBuf> {
    let dest = cached_path(cache, sha256);
    if dest.is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(cache)?;
    let out = Command::new("curl")
        .args(curl_args(url, partial))
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run curl")?;
    if !out.status.success() {
        let _ = std::fs::remove_file(partial);
        anyhow::bail!(
            "downloading {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let p = partial.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&p)).await??;
    if actual != sha256 {
        let _ = std::fs::remove_file(partial);
        return Err(super::build::QemuBuildError::SourceChecksum {
            path: url.to_string(),
            expected: sha256.to_string(),
            actual,
        }
        .into());
    }
    // Same file system as the work folder (both under the artifact directory).
    std::fs::rename(partial, &dest)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_and_the_cache_is_keyed_by_digest() {
        let a: Vec<String> = curl_args("https://example.org/d.qcow2", Path::new("/w/src.partial"))
            .into_iter()
            .map(|o| o.into_string().unwrap())
            .collect();
        let pos = |s: &str| a.iter().position(|x| x == s).unwrap();
        assert_eq!(a[pos("--proto") + 1], "=https");
        assert_eq!(a[pos("--proto-redir") + 1], "=https");
        assert!(a.contains(&"--fail".to_string()));
        assert_eq!(a[pos("--output") + 1], "/w/src.partial");
        assert_eq!(a.last().unwrap(), "https://example.org/d.qcow2");
        assert_eq!(
            cached_path(Path::new("/a/.cache"), "ab12"),
            Path::new("/a/.cache/ab12.img")
        );
    }

    #[tokio::test]
    async fn a_cached_disk_is_used_without_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cached_path(&cache, "ab12"), b"disk").unwrap();
        // The URL does not resolve: a download would fail.
        let got = fetch(
            "https://invalid.invalid/d",
            "ab12",
            &cache,
            &dir.path().join("p"),
        )
        .await
        .unwrap();
        assert_eq!(got, cached_path(&cache, "ab12"));
    }
}
