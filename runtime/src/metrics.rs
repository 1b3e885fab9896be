//! The metrics registry's exposition and the probe endpoints both processes serve:
//! `/metrics` (OpenMetrics or classic text, negotiated), `/health/live`, `/health/ready`.

use poem::http::StatusCode;
use poem::{Response, handler};
use prometheus_client::registry::Registry;

/// The OpenMetrics text exposition of a registry.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes for whoever asks: OpenMetrics when the scraper accepts it (Prometheus does), the
/// classic text format otherwise (curl, `promtool check metrics`, older scrapers).
pub fn encode_for(registry: &Registry, accept: Option<&str>) -> (&'static str, String) {
    let open_metrics = encode(registry);
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (OPENMETRICS, open_metrics)
    } else {
        (PROMETHEUS_TEXT, to_prometheus_text(&open_metrics))
    }
}

/// OpenMetrics → Prometheus text 0.0.4: a counter's family is named with its `_total` suffix,
/// and there are no `# UNIT` or `# EOF` lines.
pub fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Binds a listener (port 0 in tests) and says which address it got.
pub async fn bind(
    addr: std::net::SocketAddr,
) -> std::io::Result<(poem::listener::TcpAcceptor, std::net::SocketAddr)> {
    use poem::listener::{Acceptor as _, Listener as _};
    let acceptor = poem::listener::TcpListener::bind(addr)
        .into_acceptor()
        .await?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .ok_or_else(|| std::io::Error::other("listener has no address"))?;
    Ok((acceptor, local))
}

/// `/metrics`: the registry in the format the scraper asked for.
pub fn scrape(registry: &Registry, req: &poem::Request) -> Response {
    let accept = req.headers().get("accept").and_then(|v| v.to_str().ok());
    let (content_type, body) = encode_for(registry, accept);
    Response::builder().content_type(content_type).body(body)
}

/// `/health/live`: the process answers.
#[handler]
pub fn live() -> Response {
    Response::builder()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// `/health/ready`: 503 when a `required` check failed (the process cannot do its job),
/// otherwise 200 with `"status": "degraded"` when an `optional` one failed (it works around
/// it, e.g. payments go into the outbox while the broker is down) or `"ok"`. Every check is
/// in the body.
pub fn readiness(required: &[(&str, bool)], optional: &[(&str, bool)]) -> Response {
    let ok = required.iter().all(|(_, passed)| *passed);
    let degraded = !optional.iter().all(|(_, passed)| *passed);
    let checks: serde_json::Map<String, serde_json::Value> = required
        .iter()
        .chain(optional)
        .map(|(name, passed)| (name.to_string(), serde_json::Value::Bool(*passed)))
        .collect();
    let status = match (ok, degraded) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ok",
    };
    let body = serde_json::json!({
        "status": status,
        "checks": checks,
    });
    Response::builder()
        .status(if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        })
        .content_type("application/json")
        .body(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_total_name_in_the_classic_format() {
        let om = "# HELP jobs Jobs done.\n# TYPE jobs counter\njobs_total 3\n# HELP depth Depth.\n# TYPE depth gauge\ndepth 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total 3\n# HELP depth Depth.\n# TYPE depth gauge\ndepth 1\n"
        );
    }
}
