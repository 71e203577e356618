//! GitHub's official webhook payload examples (npm `@octokit/webhooks-examples`), signed
//! as GitHub signs them.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn all_examples() -> &'static Vec<Value> {
    static EXAMPLES: OnceLock<Vec<Value>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let path = fixtures_dir()
            .join("node_modules/@octokit/webhooks-examples/api.github.com/index.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}. Install the test fixtures first: scripts/setup.sh (or `npm ci` in tests/fixtures)",
                path.display()
            )
        });
        serde_json::from_str(&text).expect("webhooks-examples index.json is JSON")
    })
}

/// Every example payload of `event`.
pub fn examples(event: &str) -> Vec<Value> {
    let entry = all_examples()
        .iter()
        .find(|e| e["name"] == event)
        .unwrap_or_else(|| panic!("no examples for event {event}"));
    entry["examples"].as_array().unwrap().clone()
}

/// The first example of `event` for which `pick` holds.
pub fn example(event: &str, pick: impl Fn(&Value) -> bool) -> Value {
    examples(event)
        .into_iter()
        .find(|e| pick(e))
        .unwrap_or_else(|| panic!("no {event} example matches"))
}

/// GitHub's `X-Hub-Signature-256` for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    bakery::server::signature::sign(secret, body)
}
