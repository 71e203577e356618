//! Redaction of known secrets from anything bakery writes out (logs, comments, job logs,
//! job and build errors).
//!
//! Secrets are registered with the process-wide [`Redactor::global`] at the moment bakery
//! obtains them: configuration secrets when the server starts, installation tokens when
//! minted, AWS credentials when resolved or assumed, the build's SSH key when generated.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::AhoCorasick;

const MASK: &str = "***";

/// Short-lived secrets (installation tokens, role credentials, build keys) kept at most:
/// the oldest are long expired when they go, and every line written is checked against
/// every secret kept.
const MAX_EXPIRING: usize = 1024;

/// A set of secret strings to mask. Cheap to clone; clones share the set.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Secrets>>,
}

#[derive(Default)]
struct Secrets {
    /// Every secret, longest first.
    sorted: Vec<String>,
    /// The short-lived ones, oldest first.
    expiring: VecDeque<String>,
    /// One automaton over every secret, built on the first redaction after the set
    /// changes: a line is scanned once, whatever the number of secrets.
    matcher: OnceLock<Option<AhoCorasick>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.secrets.read().map(|s| s.sorted.len()).unwrap_or(0);
        write!(f, "Redactor({n} secrets)")
    }
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's redactor: every secret bakery obtains is added to it, and the
    /// process log and every stored or published text go through it.
    pub fn global() -> &'static Redactor {
        static GLOBAL: OnceLock<Redactor> = OnceLock::new();
        GLOBAL.get_or_init(Redactor::new)
    }

    /// Adds a multi-line secret (a PEM or OpenSSH private key): the whole text, and each
    /// of its lines but the `-----BEGIN/END-----` markers, as output prints them one line
    /// at a time.
    pub fn add_multiline(&self, secret: &str) {
        for part in multiline_parts(secret) {
            self.add(part);
        }
    }

    /// Like [`Redactor::add_multiline`], for a key that lives as long as one build.
    pub fn add_multiline_expiring(&self, secret: &str) {
        for part in multiline_parts(secret) {
            self.add_expiring(part);
        }
    }

    /// Adds the password of a URL (`scheme://user:password@host/...`, or a `password=`
    /// query parameter), as written and percent-decoded.
    pub fn add_url_password(&self, url: &str) {
        let mut found = vec![];
        if let Some((_, rest)) = url.split_once("://") {
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if let Some((creds, _)) = authority.rsplit_once('@') {
                if let Some((_, password)) = creds.split_once(':') {
                    found.push(password.to_string());
                }
            }
        }
        if let Some((_, query)) = url.split_once('?') {
            for pair in query.split('&') {
                if let Some(("password", v)) = pair.split_once('=') {
                    found.push(v.to_string());
                }
            }
        }
        for p in found {
            self.add(percent_decode(&p));
            self.add(p);
        }
    }

    /// Adds a secret. Values shorter than 4 characters are ignored: masking them would
    /// mangle ordinary text without protecting anything.
    pub fn add(&self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.len() < 4 {
            return;
        }
        let mut secrets = self.secrets.write().expect("redactor lock poisoned");
        // Kept for good, even if it came before as a short-lived one.
        secrets.expiring.retain(|s| *s != secret);
        secrets.insert(secret);
    }

    /// Adds a short-lived secret (an installation token, role credentials). Only the
    /// latest [`MAX_EXPIRING`] of them are kept.
    pub fn add_expiring(&self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.len() < 4 {
            return;
        }
        let mut secrets = self.secrets.write().expect("redactor lock poisoned");
        if secrets.sorted.contains(&secret) {
            // Still in use: it is the latest now.
            if let Some(i) = secrets.expiring.iter().position(|s| *s == secret) {
                if let Some(s) = secrets.expiring.remove(i) {
                    secrets.expiring.push_back(s);
                }
            }
            return;
        }
        secrets.insert(secret.clone());
        secrets.expiring.push_back(secret);
        if secrets.expiring.len() > MAX_EXPIRING {
            if let Some(old) = secrets.expiring.pop_front() {
                secrets.remove(&old);
            }
        }
    }

    /// `text` with every secret masked. Overlapping secrets are masked as one span, so
    /// no part of either shows.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().expect("redactor lock poisoned");
        let Some(matcher) = secrets.matcher() else {
            return text.to_string();
        };
        let mut spans: Vec<(usize, usize)> = vec![];
        for m in matcher.find_overlapping_iter(text) {
            match spans.last_mut() {
                Some(last) if m.start() <= last.1 => last.1 = last.1.max(m.end()),
                _ => spans.push((m.start(), m.end())),
            }
        }
        if spans.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            out.push_str(&text[at..start]);
            out.push_str(MASK);
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }
}

impl Secrets {
    fn insert(&mut self, secret: String) {
        if !self.sorted.contains(&secret) {
            self.sorted.push(secret);
            // Longest first, so a secret that contains another is masked whole.
            self.sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
            self.matcher = OnceLock::new();
        }
    }

    fn remove(&mut self, secret: &str) {
        self.sorted.retain(|s| s != secret);
        self.matcher = OnceLock::new();
    }

    /// The automaton over every secret, or `None` when there is none.
    fn matcher(&self) -> Option<&AhoCorasick> {
        self.matcher
            .get_or_init(|| {
                if self.sorted.is_empty() {
                    return None;
                }
                // Fails only past the automaton's size limits, which a bounded set of
                // secrets cannot reach; never fall back to printing them.
                Some(AhoCorasick::new(&self.sorted).expect("an automaton over the secrets"))
            })
            .as_ref()
    }
}

/// A multi-line secret whole, and its lines but the `-----BEGIN/END-----` markers.
fn multiline_parts(secret: &str) -> Vec<&str> {
    let mut parts = vec![secret.trim()];
    for line in secret.lines() {
        let line = line.trim();
        if line.len() >= 8 && !line.starts_with("-----") {
            parts.push(line);
        }
    }
    parts
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `tracing` writer that masks every registered secret before the line reaches stderr.
#[derive(Clone, Copy, Default)]
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let masked = Redactor::global().redact(&text);
        std::io::Write::write_all(&mut std::io::stderr().lock(), masked.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_keys_are_masked_line_by_line() {
        let r = Redactor::new();
        r.add_multiline("-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\nEEEEFFFF\nGG\n-----END KEY-----\n");
        assert_eq!(
            r.redact("-----BEGIN KEY-----\nAAAABBBBCCCCDDDD"),
            "-----BEGIN KEY-----\n***"
        );
        assert_eq!(r.redact("x EEEEFFFF y"), "x *** y");
    }

    #[test]
    fn only_the_latest_short_lived_secrets_are_kept() {
        let r = Redactor::new();
        r.add("configured-secret");
        for i in 0..MAX_EXPIRING + 10 {
            r.add_expiring(format!("token-{i:05}"));
        }
        assert_eq!(r.redact("token-00000"), "token-00000", "the oldest went");
        assert_eq!(r.redact(&format!("token-{:05}", MAX_EXPIRING + 9)), "***");
        assert_eq!(r.redact("configured-secret"), "***", "configured ones stay");
    }

    #[test]
    fn url_passwords_are_masked_as_written_and_decoded() {
        let r = Redactor::new();
        r.add_url_password("postgres://bakery:hunter%402x@db:5432/bakery?sslmode=require");
        r.add_url_password("postgres://db/bakery?user=u&password=s3cr3t-pw");
        assert_eq!(r.redact("hunter@2x hunter%402x s3cr3t-pw"), "*** *** ***");
        assert_eq!(r.redact("postgres://db/bakery"), "postgres://db/bakery");
    }

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redactor::new();
        r.add("hunter2-secret");
        r.add("hunter2-secret-longer");
        r.add("ab"); // too short, ignored
        assert_eq!(
            r.redact("x hunter2-secret-longer y hunter2-secret ab"),
            "x *** y *** ab"
        );
    }

    #[test]
    fn overlapping_secrets_are_masked_as_one_span() {
        let r = Redactor::new();
        r.add("abcd1234");
        r.add("1234wxyz");
        assert_eq!(r.redact("[abcd1234wxyz]"), "[***]");
        assert_eq!(r.redact("abcd1234 and 1234wxyz"), "*** and ***");
    }

    #[test]
    fn a_secret_that_expires_is_no_longer_masked_and_the_rest_still_are() {
        let r = Redactor::new();
        r.add("kept-for-good");
        for i in 0..=MAX_EXPIRING {
            r.add_expiring(format!("token-{i:05}"));
        }
        // The first short-lived one went when the 1025th came.
        assert_eq!(
            r.redact("token-00000 token-00001 kept-for-good"),
            "token-00000 *** ***"
        );
    }
}
