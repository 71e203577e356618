//! The dashboard's frame: the HTML layout every page shares (navigation, viewport for
//! phones), escaping, durations, and the one stylesheet. Every value a page shows goes
//! through [`escape`].

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::session::Viewer;

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A duration in seconds as `1h 2m`, `3m 4s` or `5s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A whole page: `body` is already HTML.
pub fn html(status: StatusCode, title: &str, viewer: Option<&Viewer>, body: &str) -> Response {
    let nav = match viewer {
        Some(v) => format!(
            "<nav><a href=\"/dashboard\">Builds</a> <a href=\"/dashboard/images\">Images</a> {}\
             <form method=\"post\" action=\"/dashboard/sign-out\"><button type=\"submit\">Sign out</button></form></nav>",
            match v {
                Viewer::Operator => "<a href=\"/dashboard/health\">Health</a>".to_string(),
                Viewer::Person { login } => format!("<span class=\"who\">{}</span>", escape(login)),
            }
        ),
        None => String::new(),
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · bakery</title><link rel=\"stylesheet\" href=\"/dashboard/style.css\"></head>\
         <body><header><strong>bakery</strong>{nav}</header><main>{body}</main></body></html>",
        escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

/// A store error: the log gets the details (hosts, databases), the page does not.
pub fn unavailable(e: anyhow::Error) -> Response {
    tracing::warn!("dashboard: cannot read the store: {e:#}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is unavailable\n",
    )
        .into_response()
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLE,
    )
        .into_response()
}

const STYLE: &str = "\
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}\
header{display:flex;flex-wrap:wrap;gap:1em;align-items:center;padding:.6em 1em;background:#24292f;color:#fff}\
header a{color:#fff;margin-right:1em}header form{display:inline}\
nav{display:flex;flex-wrap:wrap;align-items:center;gap:.3em}\
main{padding:1em;max-width:72em}\
table{border-collapse:collapse;width:100%;display:block;overflow-x:auto}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #ddd;white-space:nowrap}\
pre.log{background:#111;color:#eee;padding:.8em;overflow-x:auto;font-size:13px;max-height:60vh;white-space:pre-wrap;word-break:break-all}\
.state{font-weight:600}.succeeded{color:#1a7f37}.failed{color:#cf222e}.running{color:#9a6700}\
.queued{color:#555}.cancelled{color:#555}.error{color:#cf222e}\
form.filters{display:flex;flex-wrap:wrap;gap:.5em;margin-bottom:1em}\
input,select,button{font:inherit;padding:.3em .5em}\
a.button{display:inline-block;padding:.4em .8em;background:#24292f;color:#fff;text-decoration:none;border-radius:4px}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{font-weight:600}\
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m 5s");
        assert_eq!(duration(3725), "1h 2m");
    }
}
