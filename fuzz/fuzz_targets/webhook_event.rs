//! Arbitrary bytes as a delivery: the first line is the `X-GitHub-Event` name, the rest
//! the body. Typing must never panic, and what it accepts must hold together.
#![no_main]

use bakery_fuzz::webhook::{parse_event, WebhookEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(event) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = data.get(split + 1..).unwrap_or_default();
    match parse_event(event, body) {
        Ok(WebhookEvent::TagPushed { sha, tag, .. }) => {
            assert!(sha.len() == 40 || sha.len() == 64, "{sha}");
            assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()));
            let _ = tag;
        }
        Ok(WebhookEvent::PullRequest(pr)) => {
            let _ = (pr.is_fork(), pr.wants_validation());
        }
        Ok(_) => {}
        Err(e) => {
            // The refusal is shown to the sender: it must render.
            let _ = e.to_string();
        }
    }
});
